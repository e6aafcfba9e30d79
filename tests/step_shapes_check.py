"""Every write-back statement the tests run from a kept shape is checked against the statement
built afresh for the same command: same SQL, same values in the same places
(`circhub.connections.step_shapes`). Installed for the whole session by tests/conftest.py, so
each push of every test, on every ILS kind and dialect, checks the reuse it made."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import sqlite

from circhub.connections import step_shapes
from circhub.tasks.writeback import steps

# A positional dialect: the SQL text does not depend on the parameters' names (kept
# statements name theirs, fresh ones are anonymous), and the values line up by position.
_DIALECT = sqlite.dialect()


class ReuseMismatch(AssertionError):
    """A kept statement would not run what a fresh one runs for this command."""


def rendered(statement, params=None) -> tuple[str, list]:
    compiled = statement.compile(dialect=_DIALECT)
    values = compiled.construct_params(params)
    return str(compiled), [values[name] for name in compiled.positiontup]


def checked(kind, owner, b, build, *extra):
    statement, params = step_shapes.prepared(kind, owner, b, build, *extra)
    fresh = rendered(build(b))
    kept = rendered(statement, params)
    if kept != fresh:
        raise ReuseMismatch(f"{kind} of {owner!r}: kept {kept} but fresh {fresh}")
    return statement, params


@pytest.fixture(autouse=True, scope="session")
def _check_step_shapes():
    real = steps.prepared
    steps.prepared = checked
    yield
    steps.prepared = real

"""Write-back statements kept per step and shape (circhub.connections.step_shapes): a command
that takes the same branches gets the same statement object with its own values; one that takes
another branch (a NULL where the first had a value, the other side of an if_null) gets a
variant of its own; and the check every test session installs (tests/step_shapes_check.py)
fails on a kept statement that would not run what a fresh one runs."""

from __future__ import annotations

from datetime import datetime

import pytest

from circhub.connections import step_shapes
from circhub.connections.profile import load_profile
from circhub.connections.step_sql import Binding, identity_count, step_statement
from tests.step_shapes_check import ReuseMismatch, checked, rendered

ITEM = load_profile("koha").writeback["set_item"][0]  # holdingbranch, onloan, datelastseen


def _binding(due_at, holder="CPL", barcode="SC001-0001") -> Binding:
    return Binding({"barcode": barcode, "holder_branch": holder, "due_at": due_at,
                    "state_at": datetime(2026, 12, 4, 9, 30)})


@pytest.fixture(autouse=True)
def _nothing_kept():
    step_shapes.forget()
    yield
    step_shapes.forget()


def _prepared(b: Binding):
    return step_shapes.prepared("step", ITEM, b, lambda b: step_statement(ITEM, b))


def test_a_command_with_the_same_branches_reuses_the_statement_with_its_own_values():
    first, _ = _prepared(_binding(datetime(2026, 12, 20)))
    b = _binding(datetime(2026, 12, 27), holder="MPL", barcode="SC001-0002")
    again, params = _prepared(b)
    assert again is first
    assert rendered(again, params) == rendered(step_statement(ITEM, b))
    assert {"MPL", "SC001-0002"} <= set(params.values())


def test_a_null_where_the_first_command_had_a_value_gets_a_variant_of_its_own():
    with_due, _ = _prepared(_binding(datetime(2026, 12, 20)))
    returned = _binding(None)
    without_due, params = _prepared(returned)
    assert without_due is not with_due
    assert rendered(without_due, params) == rendered(step_statement(ITEM, returned))
    assert "onloan=NULL" in rendered(without_due, params)[0].replace(" ", "")
    assert _prepared(_binding(datetime(2027, 1, 3)))[0] is with_due  # both kept


def test_the_session_check_fails_on_a_kept_statement_that_runs_something_else():
    b = _binding(datetime(2026, 12, 20))
    step_shapes.prepared("count", ITEM, b, lambda b: identity_count(ITEM, b))
    with pytest.raises(ReuseMismatch):  # same visits, another statement: caught
        checked("count", ITEM, _binding(datetime(2026, 12, 21)),
                lambda b: step_statement(ITEM, b))

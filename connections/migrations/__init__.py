"""The central store's schema versions, kept by Alembic.

`circhub db upgrade` runs `upgrade` (creates an empty store, or applies the revisions a store
lacks, never dropping data); every other process only calls `check_current` at start, which
refuses a store behind the code and names the command to run. `circhub db status` shows both.

A store made before Alembic (the numbered steps that lived in `connections/store.py`, recorded
in `schema_migrations`, no `alembic_version`) is adopted: brought to the baseline by revision
0001's own `adopt`, stamped 0001, then upgraded like any other.

Adding a revision: `versions/NNNN_what_it_does.py` with `revision = "NNNN"` (the next number)
and `down_revision` the previous head's number; `alembic revision --autogenerate` from this
folder drafts it from `circhub.domain.schema` (tests/test_migrations.py fails while the head
and the declared schema differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from circhub.connections.engines import ConnectionSetupError

HERE = Path(__file__).parent
BASELINE = "0001"
UPGRADE_COMMAND = "circhub db upgrade"


class StoreBehind(ConnectionSetupError):
    """The central store's schema is older than this code's (or not there at all)."""


@dataclass(frozen=True)
class StoreVersion:
    current: str | None  # None: no Alembic revision yet (an empty or a pre-Alembic store)
    head: str
    pre_alembic: bool = False

    @property
    def behind(self) -> bool:
        return self.current != self.head

    def describe(self) -> str:
        if self.current is None:
            at = "made before Alembic" if self.pre_alembic else "empty (no circhub tables)"
        else:
            at = f"at revision {self.current}"
        return f"central store {at}; this code needs revision {self.head}"


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = conn
    return cfg


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    return _scripts().get_current_head()


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _pre_alembic(conn: Connection) -> bool:
    return inspect(conn).has_table("schema_migrations")


def status(engine: Engine) -> StoreVersion:
    with engine.connect() as conn:
        current = _current(conn)
        return StoreVersion(current, head(), current is None and _pre_alembic(conn))


def check_current(engine: Engine, config_path: str) -> None:
    """Refuse a store behind the code: a process start checks, never migrates."""
    version = status(engine)
    if version.behind:
        raise StoreBehind(f"{version.describe()}: run `{UPGRADE_COMMAND} -c {config_path}`")


def revision_module(revision: str):
    """A revision's module (tests read the baseline's frozen tables from it)."""
    return _scripts().get_revision(revision).module


def upgrade(engine: Engine, to: str = "head") -> list[str]:
    """Bring the store to the newest revision (or `to`); returns what was done now, in order
    ("adopted pre-Alembic store", then one "NNNN message" per revision applied)."""
    with engine.begin() as conn:
        before = _current(conn)
        done = []
        if before is None and _pre_alembic(conn):
            revision_module(BASELINE).adopt(conn)
            command.stamp(_config(conn), BASELINE)
            before, done = BASELINE, ["adopted pre-Alembic store as 0001"]
        command.upgrade(_config(conn), to)
    return done + [f"{s.revision} {s.doc}" for s in _applied(before, to)]


def _applied(before: str | None, to: str) -> list:
    """The revisions after `before` up to `to`, oldest first."""
    target = head() if to == "head" else to
    return list(reversed(list(_scripts().iterate_revisions(target, before))))


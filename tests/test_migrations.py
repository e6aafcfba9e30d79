"""The central store's schema under Alembic: `circhub db upgrade` creates a store and upgrades
one in place; a store made before Alembic (the code of 2026-12-03, which ran its numbered steps
at every start) is adopted with every row kept; a process start refuses a store behind the code
and names the command that fixes it (SQLite and real PostgreSQL)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, func, inspect, select, text
from typer.testing import CliRunner

from circhub.cli import app
from circhub.connections.migrations import (
    BASELINE,
    StoreBehind,
    head,
    revision_module,
    status,
    upgrade,
)
from circhub.connections.runtime import open_runtime
from circhub.domain.schema import metadata
from circhub.simulator.world import config_toml, member_specs

T0 = datetime(2026, 11, 20, 9, 30, 15, 123456)
STORED_TABLES = ("members", "readers", "reader_accounts", "member_items", "items", "loans",
                 "circulation_events", "outbox", "watermarks", "quarantine")


def pre_alembic_store(engine, legacy_steps=(1, 2, 3, 4, 5)) -> None:
    """A store as the pre-Alembic code made it: revision 0001's frozen tables and the step
    list it recorded, no alembic_version."""
    revision_module(BASELINE).baseline.create_all(engine)
    with engine.begin() as conn:
        for step in legacy_steps:
            conn.execute(text("INSERT INTO schema_migrations (version, name, applied_at) "
                              "VALUES (:v, :n, :at)"), {"v": step, "n": f"step {step}", "at": T0})


def fill(engine) -> None:
    """Two members' worth of everything a running hub keeps."""
    t = revision_module(BASELINE).baseline.tables
    with engine.begin() as conn:
        conn.execute(t["members"].insert(), [
            dict(code=c, name=f"Library {c}", region="Chengdu", profile="koha",
                 sync_enabled=True, writeback_enabled=True) for c in ("CD001", "CD002")])
        conn.execute(t["readers"].insert(), [
            dict(reader_key=f"{i:064x}", id_masked=f"510104********{i:04d}", id_status="valid",
                 home_member="CD001", first_seen_at=T0) for i in range(3)])
        conn.execute(t["reader_accounts"].insert(), [
            dict(member="CD001", local_id=str(i), reader_key=f"{i:064x}", card_masked="C****1",
                 home_branch="CD001", registered_on=T0, row_hash=f"{i:016x}",
                 source_updated_at=T0) for i in range(3)])
        conn.execute(t["member_items"].insert(), [
            dict(member="CD001", local_id=str(i), barcode=f"CD001{i:07d}", is_copy=False,
                 holding_member="CD001", last_seen=T0, row_hash=f"{i + 100:016x}",
                 source_updated_at=T0) for i in range(4)])
        conn.execute(t["items"].insert(), [
            dict(barcode=f"CD001{i:07d}", owner="CD001", holder="CD002" if i == 0 else "CD001",
                 status="on_loan" if i == 0 else "home", on_loan=i == 0, state_at=T0)
            for i in range(4)])
        conn.execute(t["loans"].insert(), dict(
            member="CD002", local_id="77", barcode="CD0010000000", reader_key=f"{0:064x}",
            reader_local_id="0", issued_at=T0, due_at=datetime(2026, 12, 20), renewals=1,
            row_hash="00000000000000aa", source_updated_at=T0))
        conn.execute(t["circulation_events"].insert(), dict(
            event_key="CD002:77:issued", barcode="CD0010000000", kind="issued", member="CD002",
            at=T0, loan_member="CD002", loan_local_id="77", recorded_at=T0))
        conn.execute(t["outbox"].insert(), dict(
            target="CD001", command_key="k1", kind="set_item", barcode="CD0010000000",
            payload={"holder": "CD002"}, status="pending", attempts=0, created_at=T0))
        conn.execute(t["outbox"].insert(), [
            dict(target="CD001", command_key="k2", kind="close_loan", barcode="CD0010000001",
                 payload={}, status="dead", attempts=5, last_error="refused", created_at=T0,
                 next_attempt_at=T0, outcome="gave up")])
        conn.execute(t["watermarks"].insert(), [
            dict(member="CD001", entity=e, cursor_value=T0, updated_at=T0)
            for e in ("readers", "items", "loans")])
        conn.execute(t["quarantine"].insert(), dict(
            member="CD002", entity="readers", row_key="9", rules=["id_number_valid"],
            row_masked={"local_id": "9"}, first_seen_at=T0, last_seen_at=T0))


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(select(func.count()).select_from(metadata.tables[t])).scalar()
                for t in STORED_TABLES}


def test_a_pre_alembic_store_with_data_is_adopted_and_upgraded_without_losing_a_row(
        central_engine):
    pre_alembic_store(central_engine)
    fill(central_engine)
    before = counts(central_engine)
    assert status(central_engine).pre_alembic and status(central_engine).behind

    done = upgrade(central_engine)

    assert done[0] == "adopted pre-Alembic store as 0001"
    assert status(central_engine).current == head() and not status(central_engine).behind
    assert counts(central_engine) == before
    with central_engine.connect() as conn:
        loan = conn.execute(select(metadata.tables["loans"])).one()
        assert (loan.barcode, loan.renewals, loan.issued_at) == ("CD0010000000", 1, T0)
        dead = conn.execute(text("SELECT attempts, last_error, outcome FROM outbox "
                                 "WHERE command_key = 'k2'")).one()
        assert tuple(dead) == (5, "refused", "gave up")
        marks = conn.execute(select(metadata.tables["watermarks"].c.cursor_value)).scalars()
        marks = marks.all()
        assert marks == [T0] * 3
    assert upgrade(central_engine) == []  # twice changes nothing


def test_a_store_stopped_at_the_first_legacy_step_gains_the_later_columns_and_keeps_rows(
        central_engine):
    pre_alembic_store(central_engine, legacy_steps=(1,))
    with central_engine.begin() as conn:  # as step 1 made the tables: without steps 2, 3, 5
        for table, column in (("reader_accounts", "registered_on"), ("loans", "reader_local_id"),
                              ("outbox", "next_attempt_at"), ("outbox", "outcome")):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(text("INSERT INTO outbox (target, command_key, kind, barcode, payload, "
                          "status, attempts, created_at) VALUES ('SC001', 'k1', 'set_item', "
                          "'SC0010000001', '{}', 'dead', 5, :now)"), {"now": T0})

    upgrade(central_engine)

    columns = {t: {c["name"] for c in inspect(central_engine).get_columns(t)}
               for t in ("reader_accounts", "loans", "outbox")}
    assert "registered_on" in columns["reader_accounts"]
    assert "reader_local_id" in columns["loans"]
    assert {"next_attempt_at", "outcome"} <= columns["outbox"]
    with central_engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT status, attempts FROM outbox")).one()) == (
            "dead", 5)


def test_an_empty_store_is_created_at_head_and_matches_the_declared_schema(central_engine):
    done = upgrade(central_engine)
    assert done[0].startswith(f"{BASELINE} ") and status(central_engine).current == head()
    with central_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = [d for d in compare_metadata(context, metadata)
                 if not (d[0] == "remove_table" and d[1].name == "schema_migrations")]
    assert diffs == [], "domain/schema.py and the head revision differ: add a revision"


def _config(tmp_path, store_url: str):
    specs = member_specs(1)
    path = tmp_path / "consortium.toml"
    path.write_text(config_toml(specs, {specs[0][0]: f"sqlite:///{tmp_path}/m.db"}, store_url,
                                "migrations", demo=True))
    return path


@pytest.mark.parametrize("made", ["empty", "pre_alembic", "at_baseline"])
def test_a_store_behind_the_code_is_refused_at_start_naming_the_upgrade_command(
        tmp_path, made):
    url = f"sqlite:///{tmp_path}/central.db"
    engine = create_engine(url)
    if made == "pre_alembic":
        pre_alembic_store(engine)
    elif made == "at_baseline":
        upgrade(engine, to=BASELINE)
    config = _config(tmp_path, url)
    if made == "at_baseline" and head() == BASELINE:
        pytest.skip("one revision only: no store can be behind at the baseline")

    with pytest.raises(StoreBehind, match=f"run `circhub db upgrade -c {config}`"):
        open_runtime(str(config))
    result = CliRunner().invoke(app, ["status", "-c", str(config)])
    assert result.exit_code == 2 and "circhub db upgrade" in _unwrapped(result.output)
    result = CliRunner().invoke(app, ["db", "status", "-c", str(config)])
    assert result.exit_code == 1 and "circhub db upgrade" in _unwrapped(result.output)

    result = CliRunner().invoke(app, ["db", "upgrade", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert CliRunner().invoke(app, ["db", "status", "-c", str(config)]).exit_code == 0
    open_runtime.cache_clear()
    assert open_runtime(str(config)).store is not None


def _unwrapped(output: str) -> str:
    return " ".join(output.split())  # rich wraps long lines at the terminal's width


def test_an_installed_circhub_carries_its_revisions(tmp_path):
    """A wheel (a non-editable install) has the migration environment and every revision."""
    root = Path(__file__).resolve().parents[1]
    had_build = (root / "build").exists()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path), str(root)], check=True, capture_output=True)
    if not had_build:  # setuptools builds in the source tree; leave it as it was
        shutil.rmtree(root / "build", ignore_errors=True)
    names = zipfile.ZipFile(next(tmp_path.glob("circhub-*.whl"))).namelist()
    revisions = {p.name for p in (root / "connections" / "migrations" / "versions").glob("*.py")}
    packaged = {n.rsplit("/", 1)[1] for n in names
                if n.startswith("circhub/connections/migrations/versions/")}
    assert revisions and revisions <= packaged
    assert {"circhub/connections/migrations/env.py",
            "circhub/connections/migrations/script.py.mako"} <= set(names)

"""Backfill as a person runs it: arguments checked before anything starts (exit 2, no server,
no Data Docs folder), a result in words, a rerun of a completed range that says so and reads
nothing, and a run log of a few lines however many windows are empty."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from circhub.cli import app
from circhub.connections.holds import holding
from circhub.connections.runtime import open_runtime, upgrade_store
from circhub.flows.backfill import _ProgressLog
from circhub.simulator.koha import KohaDesk
from circhub.simulator.world import config_toml, member_specs
from circhub.tasks.loads.backfill import BackfillProgress, backfill_member


@pytest.fixture
def one_member(tmp_path):
    code = member_specs(1)[0][0]
    url = f"sqlite:///{tmp_path}/member.db"
    desk = KohaDesk(create_engine(url), code)
    desk.create_schema({code: "Sichuan Provincial Library"})
    desk.add_items([f"{code}{n:07d}" for n in range(1, 41)], datetime(2026, 1, 1, 12))
    with desk.engine.begin() as conn:  # last changed on new year's day
        conn.execute(text("UPDATE items SET timestamp = '2026-01-01 12:00:00'"))
    config = tmp_path / "consortium.toml"
    config.write_text(config_toml(member_specs(1), {code: url},
                                  f"sqlite:///{tmp_path}/central.db", "ux", demo=True))
    upgrade_store(config)
    return code, config


@pytest.mark.parametrize(("args", "said"), [
    (["books", "--since", "2026-01-01"], "unknown entity 'books'; one of: readers, items"),
    (["items", "--since", "last tuesday"], "--since 'last tuesday' is not a date"),
    (["items", "--since", "2026-02-01", "--until", "2026-01-01"], "must be before --until"),
])
def test_bad_arguments_exit_two_before_anything_starts(one_member, tmp_path, args, said):
    code, config = one_member

    result = CliRunner().invoke(app, ["backfill", code, *args, "-c", str(config)],
                                env={"COLUMNS": "250"})

    assert result.exit_code == 2 and said in result.output
    assert not (tmp_path / "data-docs").exists()  # no junk folder
    assert "Traceback" not in result.output


def test_a_rerun_of_a_completed_range_says_so_and_reads_nothing(one_member):
    code, config = one_member
    rt = open_runtime(str(config))
    member = rt.consortium.member(code)
    since, until = datetime(2026, 1, 1), datetime(2026, 1, 3)

    with holding(code):  # as the backfill flow runs it, here without Prefect
        first = backfill_member(rt, member, "items", since, until, timedelta(hours=24))
        again = backfill_member(rt, member, "items", since, until, timedelta(hours=24))

    assert first.rows == 40 and not first.complete_already
    assert first.words(since, until).startswith(
        f"backfill of {code} items from 2026-01-01 00:00 to 2026-01-03 00:00 complete: 40 rows")
    assert again.complete_already and again.windows == 0
    assert again.words(since, until).endswith("was complete already (40 rows): nothing to do")


def test_a_year_of_mostly_empty_windows_logs_a_dozen_lines_not_one_per_window(caplog):
    log = logging.getLogger("test.backfill")
    progress = _ProgressLog(log, "SC001", "items")

    with caplog.at_level(logging.INFO, logger="test.backfill"):
        for done in range(1, 366):
            progress(BackfillProgress(done, 365, 40 if done > 200 else 0,
                                      datetime(2026, 1, 1) + timedelta(days=done)))

    lines = [r.getMessage() for r in caplog.records]
    assert 8 <= len(lines) <= 12
    assert "365/365 windows" in lines[-1]
    assert any("of them empty" in line for line in lines)

"""A CLI that scripts and tells the truth: exit codes (0 well, 1 needs a person, 2 used wrongly),
`--json` that parses, errors that list what is valid, empty results that say so, tables that
keep their width when piped, `--version`, and pausing a member."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from circhub.cli import app
from circhub.connections.runtime import open_runtime
from circhub.domain.schema import sync_runs
from circhub.tasks.sync.cycle import run_cycle
from tests.helpers import koha_consortium, sync_cycle

DOWN = "mysql+pymysql://root@127.0.0.1:1/not_there"


def _cli(config, *args: str):
    result = CliRunner().invoke(app, [*args, "-c", str(config)], env={"COLUMNS": "250"})
    return result.exit_code, result.output


def _json(config, *args: str):
    code, out = _cli(config, *args, "--json")
    return code, json.loads(out)


@pytest.fixture
def synced(tmp_path):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(3)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/central.db",
                                    bad_readers=1)
    world.play(days=3, actions_per_day=15)
    sync_cycle(config)
    return world, config, members


def test_status_exits_one_and_shows_the_error_of_a_member_whose_last_run_failed(synced):
    world, config, members = synced
    down = list(world.desks)[1]
    config.write_text(config.read_text().replace(members[1], DOWN))
    open_runtime.cache_clear()
    rt = open_runtime(str(config))
    run_cycle(rt, [down], push=False)  # its last run fails; its last good one is recent

    code, out = _cli(config, "status")

    assert code == 1
    assert f"{down}: last run failed: member {down}: cannot read its koha database" in out
    code, found = _json(config, "status")
    assert code == 1 and found["needs_a_person"] == 1
    first = found["members"][0]  # problems first
    assert first["member"] == down and first["last_status"] == "failed"
    assert "Can't connect" in first["last_error"]


def test_unknown_member_code_exits_two_naming_it_and_the_known_ones_before_anything_runs(
        synced, tmp_path):
    world, config, _ = synced
    docs = tmp_path / "data-docs"
    before = sorted(p.name for p in docs.iterdir()) if docs.exists() else []

    code, out = _cli(config, "sync", "-m", "NOPE01")

    assert code == 2
    assert "no member 'NOPE01'" in out and all(c in out for c in world.desks)
    assert (sorted(p.name for p in docs.iterdir()) if docs.exists() else []) == before
    assert _cli(config, "member", "history", "NOPE01")[0] == 2
    assert _cli(config, "quarantine", "-m", "NOPE01")[0] == 2


def test_unknown_outbox_ids_and_option_values_exit_two_with_what_is_valid(synced):
    _, config, _ = synced

    code, out = _cli(config, "outbox", "retry", "999999")
    assert code == 2 and "no write-back command with id 999999" in out
    code, out = _cli(config, "outbox", "resolve", "999999", "--note", "by hand")
    assert code == 2 and "999999" in out
    code, out = _cli(config, "outbox", "list", "--status", "bogus")
    assert code == 2 and "'bogus' is not one of: pending, applied" in out


def test_json_output_parses_and_empty_results_say_so(synced):
    world, config, _ = synced

    assert _json(config, "status")[1]["consortium"] == "test consortium"
    code, held = _json(config, "quarantine")
    assert code == 0 and held[0]["entity"] == "readers" and held[0]["rules"]
    code, commands = _json(config, "outbox", "list", "--status", "applied")
    assert code == 0 and all(c["status"] == "applied" for c in commands)
    assert {b["owner"] for b in _json(config, "books")[1]} <= set(world.desks)
    assert _json(config, "reader", "stats")[1]["readers"] > 0
    code, out = _cli(config, "outbox", "list", "--status", "dead")
    assert code == 0 and "no dead write-backs" in out


def test_a_paused_member_is_passed_by_shown_with_its_reason_and_resumed(synced):
    world, config, _ = synced
    paused = list(world.desks)[0]

    code, out = _cli(config, "member", "pause", paused, "--reason", "ILS migration weekend")
    assert code == 0 and "paused" in out
    rt = open_runtime(str(config))
    with rt.store.connect() as conn:
        runs_before = conn.execute(select(sync_runs.c.id).where(
            sync_runs.c.member == paused)).all()
    code, found = _json(config, "status")
    row = next(m for m in found["members"] if m["member"] == paused)
    assert row["paused"].startswith("ILS migration weekend") and not row["problems"]
    code, out = _cli(config, "status")
    assert "paused: ILS migration weekend" in out

    code, out = _cli(config, "member", "resume", paused)
    assert code == 0 and "resumed" in out
    code, history = _json(config, "member", "history", paused)
    assert len(history) == len(runs_before) and history[0]["status"] == "ok"


@pytest.mark.usefixtures("prefect_server")
def test_sync_passes_a_paused_member_by_and_names_it(synced):
    world, config, _ = synced
    paused = list(world.desks)[0]
    _cli(config, "member", "pause", paused, "--reason", "migration")
    rt = open_runtime(str(config))
    with rt.store.connect() as conn:
        before = len(conn.execute(select(sync_runs.c.id).where(
            sync_runs.c.member == paused)).all())

    code, out = _cli(config, "sync")

    assert code == 0, out
    assert f"2 of 2 members synced (1 paused: {paused})" in out
    with rt.store.connect() as conn:
        after = len(conn.execute(select(sync_runs.c.id).where(
            sync_runs.c.member == paused)).all())
    assert after == before


def test_piped_tables_keep_their_width_and_version_answers(synced):
    _, config, _ = synced
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["CIRCHUB_CONFIG"] = str(config)

    done = subprocess.run([sys.executable, "-m", "circhub", "status"], capture_output=True,
                          text=True, env=env, timeout=120)
    version = subprocess.run([sys.executable, "-m", "circhub", "--version"],
                             capture_output=True, text=True, env=env, timeout=60)

    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) > 100  # not cut at 80
    assert "…" not in done.stdout
    assert version.returncode == 0 and version.stdout.startswith("circhub ")

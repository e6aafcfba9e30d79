"""prefect.yaml applied to a real local Prefect server (with its UI), a sync triggered by
deployment and run by a process worker, then read back through the API and the browser.

One server and one worker run for the module: starting them is most of the cost.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings

from circhub.connections.runtime import open_runtime
from circhub.deployments import serve as stack
from tests.helpers import koha_consortium

SYNC = "sync-consortium/every-5-minutes"
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A Prefect server with UI, pool, limits, automations and circhub's deployments applied,
    and one sync of a simulated consortium run by deployment through a process worker."""
    root = tmp_path_factory.mktemp("served")
    urls = [f"sqlite:///{root}/m{i}.db" for i in range(3)]
    world, config = koha_consortium(root, urls, f"sqlite:///{root}/central.db")
    world.play(days=3, actions_per_day=15)
    port = _free_port()
    env = stack.prefect_env(f"http://127.0.0.1:{port}/api", root / "prefect", str(config))
    server = stack.start_server(env, port, root / "server.log")
    try:
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            yield _deploy_and_run(env, world, config, root)
    finally:
        stack.stop(server)


def _deploy_and_run(env: dict, world, config: Path, root: Path) -> dict:
    from prefect.deployments import run_deployment

    stack.prepare(open_runtime(str(config)).consortium)
    ready, missing = stack.deployable()
    stack.apply_deployments(env, ready)
    run = run_deployment(SYNC, parameters={"config": str(config)}, timeout=0)
    worker = stack.start_worker(env, root / "worker.log", run_once=True)
    try:
        worker.wait(240)
    finally:
        stack.stop(worker)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run.id)
    return {"env": env, "world": world, "run": run, "ready": ready, "missing": missing,
            "ui": env["PREFECT_API_URL"].removesuffix("/api"), "log": root / "worker.log"}


def test_deployments_are_applied_and_a_process_worker_runs_the_sync_by_deployment(served):
    run = served["run"]
    assert run.state.is_completed(), served["log"].read_text()[-3000:]
    assert re.fullmatch(r"sync-consortium-\d{4}-\d\d-\d\dT\d\d:\d\d", run.name)
    with get_client(sync_client=True) as client:
        deployments = {f"{client.read_flow(d.flow_id).name}/{d.name}": d
                       for d in client.read_deployments()}
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        pool = client.read_work_pool(stack.POOL)
    assert pool.type == "process"
    assert set(served["ready"]) <= set(deployments) and not served["missing"]
    sync, push = deployments[SYNC], deployments["push-writebacks/every-minute"]
    assert sync.schedules[0].schedule.interval.total_seconds() == 300
    assert push.schedules[0].schedule.interval.total_seconds() == 60
    assert sync.global_concurrency_limit.limit == 1 and sync.work_pool_name == stack.POOL
    assert sync.concurrency_options.collision_strategy == "CANCEL_NEW"
    nightly = deployments["reconcile/nightly"].schedules[0].schedule
    daily = deployments["daily-report/daily"].schedules[0].schedule
    assert (nightly.cron, nightly.timezone) == ("30 2 * * *", "Asia/Shanghai")
    assert (daily.cron, daily.timezone) == ("0 7 * * *", "Asia/Shanghai")
    backfill = deployments["backfill/on-demand"]
    assert not backfill.schedules
    assert {"member", "entity", "since"} <= set(backfill.parameter_openapi_schema["required"])
    summary = next(a for a in artifacts if a.key == "sync-summary")
    rows = summary.data if isinstance(summary.data, list) else json.loads(summary.data)
    assert {r["member"]: r["status"] for r in rows} == dict.fromkeys(served["world"].desks, "ok")
    extract_tags = {t for tr in task_runs if tr.name.startswith("extract-") for t in tr.tags}
    assert {"ils:koha", "region:Chengdu", "level:province"} <= extract_tags
    assert {f"extract-{code}" for code in served["world"].desks} <= {tr.name for tr in task_runs}


def _chromium(*args: str, profile: Path, wait_ms: int = 10_000) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is missing: `make test` installs it (scripts/ensure-chromium)"
    done = subprocess.run([browser, *CHROME_FLAGS, f"--user-data-dir={profile}",
                           f"--virtual-time-budget={wait_ms}", *args],  # let the app render
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _page(url: str, profile: Path, *expected: str) -> str:
    """The page's text once it shows what is expected (the app renders after its fetches,
    which a loaded 2-core machine may answer late: look again, waiting longer)."""
    for wait_ms in (10_000, 20_000, 40_000):
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", _chromium(
            "--dump-dom", url, profile=profile, wait_ms=wait_ms)))
        if all(e in text for e in expected):
            return text
    raise AssertionError(f"{url} never showed {expected}; last seen: {text[:1500]}")


def test_the_prefect_ui_shows_the_sync_run_and_its_artifact(served, tmp_path):
    ui, run = served["ui"], served["run"]
    profile = tmp_path / "chromium-profile"  # fresh: no state from other runs

    _page(f"{ui}/runs", profile, run.name)  # found in the UI's run list, as an engineer would
    run_url = f"{ui}/runs/flow-run/{run.id}"
    _page(run_url, profile, run.name, "Completed", "extract-")
    _chromium(f"--screenshot={tmp_path / 'sync-run.png'}", run_url, profile=profile)

    with get_client(sync_client=True) as client:
        artifact = next(a for a in client.read_artifacts(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[run.id]))) if a.key == "sync-summary")
    art_url = f"{ui}/artifacts/artifact/{artifact.id}"
    _page(art_url, profile, *served["world"].desks)
    _chromium(f"--screenshot={tmp_path / 'sync-summary.png'}", art_url, profile=profile,
              wait_ms=20_000)
    for shot in ("sync-run.png", "sync-summary.png"):
        assert (tmp_path / shot).stat().st_size > 20_000  # a rendered page, not a blank one


HOLD_AND_WAIT = """
import sys, time
from circhub.flows.slots import source_slots
with source_slots(sys.argv[1], wait_seconds=10):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_holders_slots_come_back_when_its_lease_ends(served):
    """A worker killed while it holds a member (SIGKILL: nothing released) holds it no longer
    than LEASE_SECONDS: the run rescheduled after the crash (docs/scaling.md) finds it free.

    On this module's real server: ended leases are revoked by its repossessor, a service the
    test harness' temporary server does not run."""
    import os
    import signal
    import sys

    from circhub.connections.config import parse_config
    from circhub.flows.slots import LEASE_SECONDS, ensure_limits, source_slots

    ensure_limits(parse_config({"consortium": {"name": "lease test"}, "members": [
        {"code": "LE001", "name": "LE001", "profile": "koha", "connection": "sqlite://"}]}))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_WAIT, "LE001"],
                              stdout=subprocess.PIPE, text=True, env=served["env"])
    try:
        assert holder.stdout.readline().strip() == "held"
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()

    # Held still, right after the kill: nothing released it early (its lease runs on).
    with pytest.raises(TimeoutError, match="LE001"), source_slots("LE001", wait_seconds=1):
        pass  # pragma: no cover - never entered
    # Then free within its lease and one round of Prefect's repossessor (every 15 s).
    with source_slots("LE001", wait_seconds=LEASE_SECONDS + 30):
        pass

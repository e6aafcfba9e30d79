"""The production topology on one machine (scripts/cluster): a Prefect server on PostgreSQL,
two process workers each in its own network namespace, the consortium sync deployment run
across them, and one worker host lost (SIGKILL of everything in its namespace) mid-run.

The lost run must be detected by its missing heartbeats, marked Crashed, rescheduled, and
finished by the other worker; the central store and every member's ILS rows must then equal
those of an undisturbed run on a byte-for-byte copy of the same members.

Needs root and iproute2: where namespaces cannot be made it FAILS saying why (never skips).
Slow (several minutes): zombie detection waits three missed 30 s heartbeats, and a slot the
lost run held stays leased until its lease (300 s) expires.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, select, text

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("circhub_cluster",
                                               ROOT / "scripts" / "cluster" / "cluster.py")
cluster_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cluster_mod)

MEMBERS = 4
# Columns that record when the hub did something, not what the data is: they differ between
# any two runs. Surrogate ids differ too (a killed transaction still used sequence values).
PROCESSING_COLUMNS = {"id", "run_id", "recorded_at", "updated_at", "created_at", "applied_at",
                      "next_attempt_at", "first_seen_at", "last_seen_at", "started_at",
                      "finished_at", "found_at", "activated_at", "retired_at", "released_at",
                      "resolved_at"}
# Clock columns: when a row was last written, by the ILS's own clock (Koha `items.timestamp`,
# set on every write-back) and its mirror in the central store. Two runs at different times
# cannot share them; nor a watermark's position (cursor value, key at it) on such a cursor
# (Koha items and loans). Every other column must be equal.
CLOCK_COLUMNS = {"timestamp", "source_updated_at", "cursor_value"}
PROCESSING_TABLES = {"sync_runs", "schema_migrations", "reader_key_epochs", "drift", "backfills"}


@pytest.fixture
def cluster(tmp_path):
    """The cluster, with two consortia on the same members: `disturbed` (the cluster's own
    config) and `baseline` (copies of the member files, its own central store)."""
    try:
        cluster_mod.require_namespaces()
    except cluster_mod.ClusterError as exc:
        pytest.fail(f"the cluster test cannot run here: {exc}")
    made = {}

    def consortium(c, central_url):
        _, config = cluster_mod.simulated_consortium(tmp_path / "members", MEMBERS, central_url)
        shutil.copytree(tmp_path / "members", tmp_path / "baseline")
        base_cfg = tmp_path / "baseline" / "consortium.toml"
        base_cfg.write_text(config.read_text()
                            .replace(str(tmp_path / "members"), str(tmp_path / "baseline"))
                            .replace(central_url, c.store_url(c.create_database("baseline"))))
        from circhub.connections.runtime import upgrade_store

        upgrade_store(base_cfg)  # its own central store, made as `circhub db upgrade` would
        made["baseline"] = base_cfg
        return config

    c = cluster_mod.up(tmp_path / "cluster", workers=2, consortium=consortium)
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: c.api_url}):
            yield c, made["baseline"]
    finally:
        errors = c.down()
        assert not errors, errors


def _run(config: str | None = None):
    from prefect.deployments import run_deployment

    return run_deployment(cluster_mod.SYNC, parameters={"config": config} if config else {},
                          timeout=0)


def _wait(run_id, done, seconds: float, what: str):
    from prefect import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if done(client, run):
                return run
            time.sleep(2)
    raise AssertionError(f"{what} within {seconds} s; last state {run.state}")


def _final(client, run) -> bool:
    return run.state is not None and run.state.is_final() and not run.state.is_crashed()


def _worker_of(c, run_id) -> int:
    """Which worker's namespace runs this flow run right now (its engine's environment)."""
    for i, ns in enumerate(c.namespaces):
        for pid in cluster_mod.sh("ip", "netns", "pids", ns, check=False).stdout.split():
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if str(run_id).encode() in env:
                return i
    return -1


def _submitted_by(c, run_id) -> set[int]:
    return {i for i in range(len(c.namespaces))
            if f"submitting flow run '{run_id}'" in (c.home / f"worker{i}.log").read_text()}


def _snapshot(config: Path) -> dict:
    """Central-store rows (less processing columns) and every member's ILS rows."""
    import tomllib

    cfg = tomllib.loads(Path(config).read_text())
    snap = {"central": _rows(cfg["consortium"]["central_store"], PROCESSING_TABLES,
                             PROCESSING_COLUMNS | CLOCK_COLUMNS)}
    for m in cfg["members"]:
        snap[m["code"]] = _rows(m["connection"], set(), CLOCK_COLUMNS)
    return snap


def _rows(url: str, skip_tables: set, skip_columns: set) -> dict:
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    out = {}
    with engine.connect() as conn:
        for name, table in meta.tables.items():
            if name in skip_tables:
                continue
            cols = [col for col in table.columns if col.name not in skip_columns]
            out[name] = sorted(repr(tuple(r)) for r in conn.execute(select(*cols)))
    engine.dispose()
    return out


def test_a_worker_host_lost_mid_sync_is_crashed_rescheduled_and_the_result_is_unchanged(
        cluster):
    from prefect import get_client

    c, baseline = cluster
    # The server keeps its state in PostgreSQL, not SQLite.
    eng = create_engine(cluster_mod.PG_ADMIN.rsplit("/", 1)[0] + f"/{c.databases[0]}")
    with eng.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM work_pool WHERE name = 'circhub'")
                            ).scalar() == 1
        assert conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
                            ).scalar() == 1
    eng.dispose()

    # Undisturbed: two cycles of the baseline consortium through the deployment.
    undisturbed = []
    for _ in range(2):
        run = _run(str(baseline))
        undisturbed.append(_wait(run.id, _final, 300, "undisturbed sync finished"))
    assert all(r.state.is_completed() for r in undisturbed), [r.state for r in undisturbed]

    # Disturbed: kill the worker host that runs the sync once the run is under way.
    run = _run()

    def under_way(client, r):
        if not (r.state and r.state.is_running()):
            return False
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        trs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id])))
        return any(tr.name.startswith(("extract-", "merge-")) and tr.state.is_completed()
                   for tr in trs)

    _wait(run.id, under_way, 300, "disturbed sync under way")
    victim = _worker_of(c, run.id)
    assert victim >= 0, "the running flow's process is in no worker namespace"
    killed = c.kill_worker_host(victim)
    assert killed
    survivor = 1 - victim

    # Zombie detection (90 s without heartbeat) -> Crashed -> Scheduled -> the survivor.
    # A slot the lost run held is free again when its 300 s lease expires.
    done = _wait(run.id, _final, 900, "crashed run rescheduled and finished")
    assert done.state.is_completed(), done.state
    with get_client(sync_client=True) as client:
        history = [s.type.value for s in client.read_flow_run_states(run.id)]
    assert "CRASHED" in history and history.index("CRASHED") < len(history) - 1, history
    assert done.run_count >= 2
    # The first attempt ran in the victim's namespace (seen in /proc above); that namespace
    # is empty now, so the attempt that completed ran on the survivor, whose worker took it.
    assert not cluster_mod.sh("ip", "netns", "pids", c.namespaces[victim]).stdout.split()
    assert survivor in _submitted_by(c, run.id)

    # Second cycle, as the undisturbed side had.
    again = _wait(_run().id, _final, 300, "second disturbed cycle finished")
    assert again.state.is_completed(), again.state

    disturbed, calm = _snapshot(Path(c.config)), _snapshot(baseline)
    assert disturbed.keys() == calm.keys()
    differ = {f"{part}.{table}": (sorted(set(disturbed[part][table]) ^ set(rows))[:4])
              for part in calm for table, rows in calm[part].items()
              if disturbed[part][table] != rows}
    assert not differ, differ
    assert all(calm["central"][t] for t in ("loans", "circulation_events", "outbox"))
    assert sum(len(rows) for rows in calm[next(iter(calm.keys() - {"central"}))].values())
    assert re.search(r"169\.254\.\d+\.1", c.api_url) and os.path.exists(c.config)

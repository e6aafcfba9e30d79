"""Sync flows: the consortium, or one member, through the one cycle composition.

`circhub.tasks.sync.cycle.run_cycle` extracts every member in parallel (bounded source
connections), validates them all at once, merges them one after the other, and pushes what is
pending; the flows give it Prefect's runner and publish what it returns. A member failing is
recorded and named in the run's message; the run is Failed only past `max_failed_share`
(`tasks.sync.verdict`), or when the hub itself fails (config, key, central store).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from circhub.connections.runtime import default_config_path, open_runtime
from circhub.flows.alerts import raise_alerts
from circhub.flows.attempts import refuse_endless_attempts
from circhub.flows.naming import timed_name
from circhub.flows.slots import ensure_limits
from circhub.flows.summary import end_state, member_checks, publish_sync_summary, sync_row
from circhub.flows.tasks import PrefectRunner
from circhub.tasks.sync.cycle import run_cycle
from circhub.tasks.sync.pauses import without_paused
from circhub.tasks.sync.validate import publish_data_docs
from circhub.tasks.sync.verdict import sync_verdict


def _consortium_run_name() -> str:
    return timed_name("sync-consortium")


def _library_run_name() -> str:
    return timed_name(f"sync-{flow_run.parameters.get('member')}")


@flow(name="sync-consortium", flow_run_name=_consortium_run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=8),
      timeout_seconds=1800)  # a hung central store must end the run, not hold the schedule
def sync_consortium(config: str | None = None, members: list[str] | None = None):
    """Every enabled member (or the ones named), in parallel; then all pending write-backs."""
    refuse_endless_attempts()
    config = config or default_config_path()
    rt = open_runtime(config)
    for code in members or ():
        rt.consortium.member(code)  # an unknown code is an error by name, before any work
    chosen = [m.code for m in rt.consortium.members
              if m.sync and (members is None or m.code in members)]
    get_run_logger().info("syncing %d members of %s", len(chosen), rt.consortium.name)
    return _run(rt, chosen, "sync-consortium")


@flow(name="sync-library", flow_run_name=_library_run_name, timeout_seconds=900)
def sync_library(member: str, config: str | None = None):
    """One member: extract, validate, merge, then push what is pending to the owners."""
    refuse_endless_attempts()
    config = config or default_config_path()
    rt = open_runtime(config)
    rt.consortium.member(member)  # an unknown code is an error by name, before any work
    return _run(rt, [member], f"sync-{member}")


def _run(rt, chosen: list[str], docs_site: str):
    chosen, paused = without_paused(rt.store, chosen)
    if paused:
        get_run_logger().info("passing by %d paused member(s): %s (`circhub member resume`)",
                              len(paused), ", ".join(paused))
    ensure_limits(rt.consortium)  # strict limits: they must exist before any extract
    outcomes = run_cycle(rt, chosen, PrefectRunner(rt), run_label=flow_run.name)
    verdict = sync_verdict(outcomes, rt.consortium.max_failed_share, paused)
    raise_alerts(rt, failed=verdict.failed)
    publish_data_docs(rt.consortium, docs_site, get_run_logger(),  # once per run
                      member_checks(outcomes, rt.consortium), flow_run.name)
    publish_sync_summary(outcomes, rt.consortium, verdict)
    (get_run_logger().info if verdict.ok else get_run_logger().error)(verdict.message)
    return end_state(verdict, {code: sync_row(o, rt.consortium) for code, o in outcomes.items()})

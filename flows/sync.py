"""Sync flows: the consortium, or one member, through the one cycle composition.

`circhub.tasks.sync.cycle.run_cycle` extracts every member in parallel (bounded source
connections), validates them all at once, merges them one after the other, and pushes what is
pending; the flows give it Prefect's runner and publish what it returns. One member failing is
recorded, reported and raised at the end, after the others have synced.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from circhub.connections.runtime import default_config_path, open_runtime
from circhub.flows.alerts import raise_alerts
from circhub.flows.attempts import refuse_endless_attempts
from circhub.flows.naming import timed_name
from circhub.flows.slots import ensure_limits
from circhub.flows.summary import publish_summary
from circhub.flows.tasks import PrefectRunner
from circhub.tasks.sync.cycle import run_cycle
from circhub.tasks.sync.validate import publish_data_docs


def _consortium_run_name() -> str:
    return timed_name("sync-consortium")


def _library_run_name() -> str:
    from prefect.runtime import flow_run

    return timed_name(f"sync-{flow_run.parameters.get('member')}")


@flow(name="sync-consortium", flow_run_name=_consortium_run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=8),
      timeout_seconds=1800)  # a hung central store must end the run, not hold the schedule
def sync_consortium(config: str | None = None, members: list[str] | None = None) -> dict:
    """Every enabled member (or the ones named), in parallel; then all pending write-backs."""
    refuse_endless_attempts()
    config = config or default_config_path()
    rt = open_runtime(config)
    chosen = [m.code for m in rt.consortium.members
              if m.sync and (members is None or m.code in members)]
    get_run_logger().info("syncing %d members of %s", len(chosen), rt.consortium.name)
    ensure_limits(rt.consortium)  # strict limits: they must exist before any extract
    outcomes = run_cycle(rt, chosen, PrefectRunner(rt))
    raise_alerts(rt)
    publish_data_docs(rt.consortium, "sync-consortium", get_run_logger())  # once per run
    publish_summary(outcomes, f"consortium sync of {len(chosen)} members")
    return {code: o.row() for code, o in outcomes.items()}


@flow(name="sync-library", flow_run_name=_library_run_name, timeout_seconds=900)
def sync_library(member: str, config: str | None = None) -> dict:
    """One member: extract, validate, merge, then push what is pending to the owners."""
    refuse_endless_attempts()
    config = config or default_config_path()
    rt = open_runtime(config)
    rt.consortium.member(member)  # an unknown code is an error by name, before any work
    ensure_limits(rt.consortium)
    outcomes = run_cycle(rt, [member], PrefectRunner(rt))
    publish_data_docs(rt.consortium, f"sync-{member}", get_run_logger())
    publish_summary(outcomes, f"sync of {member}")
    return outcomes[member].row()

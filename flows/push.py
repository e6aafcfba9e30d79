"""Push flow: apply every pending write-back to the members that are owed one."""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from circhub.connections.runtime import default_config_path, open_runtime
from circhub.flows.alerts import raise_alerts
from circhub.flows.attempts import refuse_endless_attempts
from circhub.flows.naming import push_run_name
from circhub.flows.outbox import publish_outbox_artifacts
from circhub.flows.slots import ensure_limits
from circhub.flows.summary import publish_summary
from circhub.flows.tasks import PrefectRunner
from circhub.tasks.sync.cycle import run_push


@flow(name="push-writebacks", flow_run_name=push_run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=8), timeout_seconds=600)
def push_writebacks(config: str | None = None) -> dict:
    refuse_endless_attempts()
    config = config or default_config_path()
    rt = open_runtime(config)
    ensure_limits(rt.consortium)
    outcomes = run_push(rt, PrefectRunner(rt))
    publish_outbox_artifacts(rt)  # dead letters, exceptions, dry runs: what needs a person
    raise_alerts(rt, stale=False)
    publish_summary(outcomes, "write-back push")
    return {code: o.row() for code, o in outcomes.items()}

"""Push flow: apply every pending write-back to the members that are owed one."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from circhub.connections.runtime import default_config_path, open_runtime
from circhub.flows.alerts import raise_alerts
from circhub.flows.attempts import refuse_endless_attempts
from circhub.flows.naming import push_run_name
from circhub.flows.outbox import publish_outbox_artifacts
from circhub.flows.slots import ensure_limits
from circhub.flows.summary import end_state, publish_push_summary, push_row
from circhub.flows.tasks import PrefectRunner
from circhub.tasks.sync.cycle import run_push
from circhub.tasks.sync.verdict import push_verdict


@flow(name="push-writebacks", flow_run_name=push_run_name,
      task_runner=ThreadPoolTaskRunner(max_workers=8), timeout_seconds=600)
def push_writebacks(config: str | None = None):
    refuse_endless_attempts()
    config = config or default_config_path()
    rt = open_runtime(config)
    ensure_limits(rt.consortium)
    outcomes = run_push(rt, PrefectRunner(rt))
    verdict = push_verdict(outcomes, rt.consortium.max_failed_share)
    publish_outbox_artifacts(rt)  # dead letters, exceptions, dry runs: what needs a person
    raise_alerts(rt, stale=False)
    publish_push_summary(outcomes, rt.consortium, verdict)
    if outcomes:
        (get_run_logger().info if verdict.ok else get_run_logger().error)(verdict.message)
    return end_state(verdict, {code: push_row(o, rt.consortium) for code, o in outcomes.items()})

"""Push flow: apply every pending write-back to the members that are owed one."""

from __future__ import annotations

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from connections.runtime import default_config_path
from flows.sync import MemberOutcome, publish_summary, push_all


@flow(name="push-writebacks", task_runner=ThreadPoolTaskRunner(max_workers=8))
def push_writebacks(config: str | None = None) -> dict:
    config = config or default_config_path()
    outcomes: dict[str, MemberOutcome] = {}
    push_all(config, outcomes)
    publish_summary(outcomes, "write-back push")
    return {code: o.row() for code, o in outcomes.items()}

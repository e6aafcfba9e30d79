"""Nightly reconcile: every member's rows compared with the hub by key and content; drift
repaired and reported."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed

from circhub.connections.runtime import default_config_path, open_runtime
from circhub.flows.attempts import refuse_endless_attempts
from circhub.flows.slots import ensure_limits, source_slots
from circhub.flows.tasks import quiet_expected_failures
from circhub.tasks.loads.reconcile import reconcile_member


@task(name="reconcile-member", task_run_name="reconcile-{member_code}", cache_policy=NO_CACHE)
def reconcile_task(config: str, member_code: str, fix: bool) -> list[dict]:
    rt = open_runtime(config)
    with source_slots(member_code):
        found = reconcile_member(rt, rt.consortium.member(member_code), fix=fix)
    rows = [{"member": member_code, "entity": d.entity, "rows checked": d.rows_checked,
             "missing at hub": len(d.missing), "gone at source": len(d.extra),
             "changed without its cursor": len(d.changed)} for d in found]
    for r in rows:
        if r["missing at hub"] or r["gone at source"] or r["changed without its cursor"]:
            get_run_logger().warning(
                "member %s %s: %d missing, %d gone at source, %d changed without its cursor",
                member_code, r["entity"], r["missing at hub"], r["gone at source"],
                r["changed without its cursor"])
    return rows


@flow(name="reconcile")
def reconcile(config: str | None = None, members: list[str] | None = None,
              fix: bool = True):
    refuse_endless_attempts()
    config = config or default_config_path()
    rt = open_runtime(config)
    ensure_limits(rt.consortium)
    chosen = [m.code for m in rt.consortium.members
              if m.sync and (members is None or m.code in members)]
    quiet_expected_failures()  # an unreachable member: one line, not a traceback
    futures = [reconcile_task.submit(config, code, fix) for code in chosen]
    rows, failed = [], []
    for code, fut in zip(chosen, futures, strict=True):
        state = fut.wait() or fut.state
        if state.is_completed():
            rows += state.result()
        else:
            failed.append(f"{code}: {state.message}")
    if rows:
        create_table_artifact(table=rows, key="reconcile-summary",
                              description="rows compared per member and entity, by key and "
                                          "content")
    # The sync's rule (tasks.sync.verdict): members down are named, the run fails past the share.
    message = f"{len(chosen) - len(failed)} of {len(chosen)} members reconciled"
    if failed:
        message += f"; {len(failed)} failed: " + "; ".join(failed[:10])
    share = rt.consortium.max_failed_share
    if len(failed) > share * len(chosen):
        return Failed(message=f"more than max_failed_share ({share:g}) failed: {message}",
                      data=rows)
    return Completed(message=message, data=rows)

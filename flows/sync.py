"""Sync flows: one member, or the whole consortium in parallel.

Extraction runs in parallel (bounded source connections); validation runs once for every
extracted member (one Great Expectations run per entity); merges run in one task, one member at
a time on the central store; then every member owed write-backs gets them pushed. One member
failing is recorded, reported and raised at the end, after the others have synced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from connections.runtime import default_config_path, open_runtime
from flows.alerts import raise_alerts
from flows.attempts import refuse_endless_attempts
from flows.naming import tagged
from tasks.limits import ensure_limits
from tasks.pipeline import finish_run, start_run
from tasks.push import targets_with_pending
from tasks.validate import publish_data_docs
from tasks.wrappers import error_line, extract_task, merge_task, push_task, validate_task


class MembersFailed(RuntimeError):
    """Some members could not be synced; the others were."""


@dataclass
class MemberOutcome:
    member: str
    status: str = "ok"
    extracted: dict = field(default_factory=dict)
    validated: dict = field(default_factory=dict)  # entity -> {"valid": n, "quarantined": n}
    quarantined: int = 0
    merged: dict = field(default_factory=dict)
    events: int = 0
    commands: int = 0
    pushed: int = 0
    error: str | None = None
    rules: list[dict] = field(default_factory=list)  # GX results: entity, rule, checked, failed
    catching_up: tuple[str, ...] = ()  # entities read as a slice of a larger delta

    def row(self) -> dict:
        return {
            "member": self.member,
            "status": self.status,
            **{e: self.entity_cell(e) for e in ("readers", "items", "loans")},
            "quarantined": self.quarantined,
            "events": self.events,
            "commands": self.commands,
            "pushed": self.pushed,
            "catching_up": ", ".join(self.catching_up),
            "error": self.error or "",
        }

    def entity_cell(self, entity: str) -> str:
        v = self.validated.get(entity, {})
        return "/".join(str(n) for n in (self.extracted.get(entity, 0), v.get("valid", 0),
                                         v.get("quarantined", 0), self.merged.get(entity, 0)))


def _consortium_run_name() -> str:
    return f"sync-consortium-{datetime.now():%Y-%m-%dT%H:%M}"


def _library_run_name() -> str:
    from prefect.runtime import flow_run

    return f"sync-{flow_run.parameters.get('member')}-{datetime.now():%Y-%m-%dT%H:%M}"


def _error_text(state) -> str:
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - we want the message of whatever failed
        return error_line(exc)
    return "failed"


def merge_members(config: str, futures: dict) -> dict[str, MemberOutcome]:
    """Wait for the members' extracts, validate them all in one task, then merge each member
    in its own task. A member failing at any stage fails alone, by name."""
    rt = open_runtime(config)
    outcomes = {code: MemberOutcome(code) for code in futures}
    run_ids = {code: start_run(rt, code) for code in futures}
    extracts = {}
    for code, fut in futures.items():
        state = fut.wait() or fut.state
        if state.is_completed():
            extracts[code] = state.result()
            outcomes[code].extracted = extracts[code].counts()
            outcomes[code].catching_up = extracts[code].partial
        else:
            _failed(outcomes[code], state)
    # One task, merging in member order: the outcome of a cycle does not depend on which
    # thread got the store first (a conflict seen mid-cycle is recorded the same way each run).
    passed = _validate_all(config, extracts, outcomes)
    if passed:
        batches = {code: (extracts[code], val) for code, val in passed.items()}
        _merged(outcomes, list(passed), merge_task(config, batches, return_state=True))
    for code, out in outcomes.items():
        finish_run(rt, run_ids[code], out.status, out.row(), out.error)
    return outcomes


def _validate_all(config: str, extracts: dict, outcomes: dict[str, MemberOutcome]) -> dict:
    """The members whose rows passed validation, with their Validated."""
    if not extracts:
        return {}
    state = validate_task(config, extracts, return_state=True)
    if not state.is_completed():
        for code in extracts:
            _failed(outcomes[code], state)
        return {}
    passed = {}
    for code, val in state.result().items():
        out = outcomes[code]
        if isinstance(val, str):  # the member's batch was refused whole
            out.status, out.error = "failed", val
            continue
        out.quarantined, out.validated, out.rules = len(val.bad), val.counts(), val.summary
        passed[code] = val
    return passed


def _merged(outcomes: dict[str, MemberOutcome], codes: list[str], state) -> None:
    if not state.is_completed():
        for code in codes:
            _failed(outcomes[code], state)
        return
    for code, rep in state.result().items():
        out = outcomes[code]
        if isinstance(rep, str):  # that member's merge failed; the reason
            out.status, out.error = "failed", rep
        else:
            out.merged, out.events, out.commands = rep.merged, rep.events, rep.commands


def _failed(out: MemberOutcome, state) -> None:
    out.status, out.error = "failed", _error_text(state)


def push_all(config: str, outcomes: dict[str, MemberOutcome]) -> None:
    rt = open_runtime(config)
    futures = {}
    for target in targets_with_pending(rt.store):
        with tagged(rt, target):
            futures[target] = push_task.submit(config, target)
    for target, fut in futures.items():
        state = fut.wait() or fut.state
        out = outcomes.setdefault(target, MemberOutcome(target))
        if state.is_completed():
            rep = state.result()
            out.pushed += rep.applied
            if rep.errors:
                out.error = out.error or rep.errors[0]
        else:
            out.error = out.error or f"push failed: {_error_text(state)}"


def publish_summary(outcomes: dict[str, MemberOutcome], title: str) -> None:
    rows = [o.row() for o in sorted(outcomes.values(), key=lambda o: o.member)]
    create_table_artifact(table=rows, key="sync-summary",
                          description=f"{title}. Per member; readers, items and loans read "
                                      "extracted/valid/quarantined/merged; catching_up names "
                                      "the entities read as a slice of a larger delta "
                                      "(max_delta_rows), which the next runs go on with")
    publish_validation(outcomes)
    failed = [o for o in outcomes.values() if o.status == "failed"]
    if failed:
        names = "; ".join(f"{o.member}: {o.error}" for o in failed)
        raise MembersFailed(f"{len(failed)} of {len(outcomes)} member(s) failed: {names}")


def publish_validation(outcomes: dict[str, MemberOutcome]) -> None:
    """Per member and entity: rows checked, and every expectation that failed with its count."""
    rows = []
    for o in sorted(outcomes.values(), key=lambda o: o.member):
        checked: dict[str, int] = {}
        for r in o.rules:
            checked[r["entity"]] = r["checked"]
            if r["failed"]:
                rows.append({"member": o.member, "entity": r["entity"], "rule": r["rule"],
                             "checked": r["checked"], "failed": r["failed"]})
        rows += [{"member": o.member, "entity": e, "rule": "(all rules)", "checked": n,
                  "failed": 0} for e, n in checked.items()
                 if not any(x["member"] == o.member and x["entity"] == e for x in rows)]
    if rows:
        create_table_artifact(table=rows, key="validation-summary",
                              description="Great Expectations results of this run: rows checked "
                                          "and failing rows per expectation (quarantined)")


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
    futures = {}
    for code in chosen:
        with tagged(rt, code):
            futures[code] = extract_task.submit(config, code)
    outcomes = merge_members(config, futures)
    push_all(config, outcomes)
    raise_alerts(rt)
    publish_data_docs(rt.consortium, "sync-consortium", get_run_logger())  # once per run
    publish_summary(outcomes, f"consortium sync of {len(chosen)} members")
    return {code: o.row() for code, o in outcomes.items()}


@flow(name="sync-library", flow_run_name=_library_run_name, timeout_seconds=900)
def sync_library(member: str, config: str | None = None) -> dict:
    """One member: extract, validate, merge, then push what that caused to the owners."""
    refuse_endless_attempts()
    config = config or default_config_path()
    rt = open_runtime(config)
    ensure_limits(rt.consortium)
    with tagged(rt, member):
        future = extract_task.submit(config, member)
    outcomes = merge_members(config, {member: future})
    outcome = outcomes[member]
    push_all(config, outcomes)
    publish_data_docs(rt.consortium, f"sync-{member}", get_run_logger())
    publish_summary(outcomes, f"sync of {member}")
    return outcome.row()

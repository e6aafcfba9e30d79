"""A run's summary in the Prefect UI, and the state it ends in.

One artifact key per flow and purpose, so that one never overwrites another's table:
`sync-summary` (sync-consortium, sync-library), `push-summary` (push-writebacks, and only
when a push did something: a minute's push with nothing to do writes no artifact),
`validation-summary` (the Great Expectations results of a sync). Each row names the member
beside its code, and its counts sit under column headers.

The run's state comes from `tasks.sync.verdict`: Completed with a message that counts and names
the members that failed, Failed past `max_failed_share`. The state is returned by the flow
(not raised), so an expected condition leaves no traceback in the run's log.
"""

from __future__ import annotations

from prefect.artifacts import create_table_artifact
from prefect.states import Completed, Failed, State

from circhub.connections.config import Consortium
from circhub.tasks.sync.cycle import MemberOutcome
from circhub.tasks.sync.docs_pages import MemberChecks
from circhub.tasks.sync.verdict import Verdict

ENTITIES = ("readers", "items", "loans")
SYNC_SUMMARY, PUSH_SUMMARY, VALIDATION_SUMMARY = ("sync-summary", "push-summary",
                                                  "validation-summary")


def sync_row(o: MemberOutcome, consortium: Consortium) -> dict:
    """One member's line of the sync table: its name, then read / quarantined / merged per
    entity under headers of their own."""
    row = {"member": o.member, "name": _name(consortium, o.member), "status": o.status}
    extracted = o.extract.counts() if o.extract else {}
    checked = o.validated.counts() if o.validated else {}
    merged = o.merged.merged if o.merged else {}
    for e in ENTITIES:
        row[f"{e} read"] = extracted.get(e, 0)
        row[f"{e} quarantined"] = checked.get(e, {}).get("quarantined", 0)
        row[f"{e} merged"] = merged.get(e, 0)
    row.update({"events": o.merged.events if o.merged else 0,
                "write-backs owed": o.merged.commands if o.merged else 0,
                "pushed": o.pushed.applied if o.pushed else 0,
                "catching up": ", ".join(o.catching_up), "error": o.error() or ""})
    return row


def push_row(o: MemberOutcome, consortium: Consortium) -> dict:
    p = o.pushed
    return {"member": o.member, "name": _name(consortium, o.member),
            "applied": p.applied if p else 0, "failed": p.failed if p else 0,
            "dead-lettered": p.dead if p else 0, "waiting": p.waiting if p else 0,
            "held (write-back off)": p.held if p else 0, "error": o.error() or ""}


def publish_sync_summary(outcomes: dict[str, MemberOutcome], consortium: Consortium,
                         verdict: Verdict) -> None:
    rows = [sync_row(o, consortium) for o in _sorted(outcomes)]
    if rows:
        create_table_artifact(table=rows, key=SYNC_SUMMARY, description=(
            f"{verdict.message}. Per member: rows read, quarantined and merged per entity; "
            "'catching up' names the entities read as a slice of a larger delta "
            "(max_delta_rows), which the next runs go on with"))
    publish_validation(outcomes, consortium)


def publish_push_summary(outcomes: dict[str, MemberOutcome], consortium: Consortium,
                         verdict: Verdict) -> None:
    """Only members the push did something for; none: no artifact."""
    rows = [push_row(o, consortium) for o in _sorted(outcomes) if _did_something(o)]
    if rows:
        create_table_artifact(table=rows, key=PUSH_SUMMARY, description=verdict.message)


def _did_something(o: MemberOutcome) -> bool:
    p = o.pushed
    return bool(o.push_failure or (p and (p.applied or p.failed or p.held or p.unreachable
                                          or p.unsupported)))


def publish_validation(outcomes: dict[str, MemberOutcome], consortium: Consortium) -> None:
    """Per member and entity: rows checked, and every expectation that failed with its count."""
    rows = []
    for o in _sorted(outcomes):
        summary = o.validated.summary if o.validated else []
        failing = [r for r in summary if r["failed"]]
        name = _name(consortium, o.member)
        rows += [{"member": o.member, "name": name, "entity": r["entity"], "rule": r["rule"],
                  "checked": r["checked"], "failed": r["failed"]} for r in failing]
        checked = {r["entity"]: r["checked"] for r in summary}
        rows += [{"member": o.member, "name": name, "entity": e, "rule": "(all rules)",
                  "checked": n, "failed": 0} for e, n in checked.items()
                 if not any(r["entity"] == e for r in failing)]
    if rows:
        create_table_artifact(table=rows, key=VALIDATION_SUMMARY,
                              description="Great Expectations results of this run: rows checked "
                                          "and failing rows per expectation (quarantined)")


def member_checks(outcomes: dict[str, MemberOutcome], consortium: Consortium
                  ) -> list[MemberChecks]:
    """Each member's validation for the run's Data Docs index (`docs_pages`)."""
    keep = ("entity", "rule", "checked", "failed")
    return [MemberChecks(o.member, _name(consortium, o.member),
                         [{k: r[k] for k in keep} for r in
                          (o.validated.summary if o.validated else [])],
                         o.failure.cause if o.failure else "")
            for o in _sorted(outcomes)]


class MembersFailed(RuntimeError):
    """More members failed than `max_failed_share` allows; `rows` is the run's per-member
    result all the same (a Failed state's data must be an exception)."""

    def __init__(self, message: str, rows: dict):
        super().__init__(message)
        self.rows = rows


def end_state(verdict: Verdict, result: dict) -> State:
    """The flow's return: its state says what happened, its data is the per-member result
    (inside `MembersFailed` when Failed). Returned, not raised: no traceback in the log."""
    if verdict.ok:
        return Completed(message=verdict.message, data=result)
    return Failed(message=verdict.message, data=MembersFailed(verdict.message, result))


def run_rows(state: State) -> dict | None:
    """The per-member rows of a sync or push run, whether it Completed or Failed."""
    got = state.result(raise_on_failure=False)
    if isinstance(got, MembersFailed):
        return got.rows
    return got if isinstance(got, dict) else None


def _name(consortium: Consortium, code: str) -> str:
    return next((m.name for m in consortium.members if m.code == code), "")


def _sorted(outcomes: dict[str, MemberOutcome]) -> list[MemberOutcome]:
    return sorted(outcomes.values(), key=lambda o: o.member)

"""A run's summary in the Prefect UI: one table per run, one row per member.

Published at the end of the sync and push flows from the cycle's typed outcomes. Members that
failed are raised together afterwards (`MembersFailed`), naming each with its cause, once the
others have done their work.
"""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from circhub.tasks.sync.cycle import MemberOutcome


class MembersFailed(RuntimeError):
    """Some members could not be synced; the others were."""


def publish_summary(outcomes: dict[str, MemberOutcome], title: str) -> None:
    rows = [o.row() for o in sorted(outcomes.values(), key=lambda o: o.member)]
    create_table_artifact(table=rows, key="sync-summary",
                          description=f"{title}. Per member; readers, items and loans read "
                                      "extracted/valid/quarantined/merged; catching_up names "
                                      "the entities read as a slice of a larger delta "
                                      "(max_delta_rows), which the next runs go on with")
    publish_validation(outcomes)
    failed = [o for o in outcomes.values() if not o.ok]
    if failed:
        names = "; ".join(f"{o.member}: {o.failure.cause}" for o in failed)
        raise MembersFailed(f"{len(failed)} of {len(outcomes)} member(s) failed: {names}")


def publish_validation(outcomes: dict[str, MemberOutcome]) -> None:
    """Per member and entity: rows checked, and every expectation that failed with its count."""
    rows = []
    for o in sorted(outcomes.values(), key=lambda o: o.member):
        summary = o.validated.summary if o.validated else []
        failing = [r for r in summary if r["failed"]]
        rows += [{"member": o.member, "entity": r["entity"], "rule": r["rule"],
                  "checked": r["checked"], "failed": r["failed"]} for r in failing]
        checked = {r["entity"]: r["checked"] for r in summary}
        rows += [{"member": o.member, "entity": e, "rule": "(all rules)", "checked": n,
                  "failed": 0} for e, n in checked.items()
                 if not any(r["entity"] == e for r in failing)]
    if rows:
        create_table_artifact(table=rows, key="validation-summary",
                              description="Great Expectations results of this run: rows checked "
                                          "and failing rows per expectation (quarantined)")

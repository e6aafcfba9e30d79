"""`circhub prepare MEMBER`: create in a member's ILS what its profile's `[[prepare]]` section
says the write-backs need (Koha: a branch standing for each other member), and nothing else.

Each object is checked first ("is it there?", its `where`) and inserted only when missing, as
the write-back step `insert_missing` is, all in one ILS transaction: a second run creates
nothing, and a run that fails half-way leaves the ILS as it was. `--dry-run` only checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from circhub.connections.config import Consortium, Member
from circhub.connections.live_schema import column_renderer
from circhub.connections.prepare import PrepareObject
from circhub.connections.profile import load_profile
from circhub.connections.step_sql import Binding, as_binding, row_exists
from circhub.tasks.writeback.steps import run_steps


@dataclass(frozen=True)
class Planned:
    """One prepare object for one set of parameters (one other member, in a loop)."""

    obj: PrepareObject
    params: dict[str, Any]

    @property
    def description(self) -> str:
        return self.obj.description(self.params)


@dataclass
class PrepareReport:
    member: str
    profile: str
    created: list[str] = field(default_factory=list)  # descriptions, in profile order
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # a dry run: what a run would create
    dry_run: bool = False

    def lines(self) -> list[str]:
        head = f"member {self.member} ({self.profile})"
        if self.dry_run:
            out = [f"{head}: {len(self.missing)} object(s) to create, "
                   f"{len(self.present)} already there"]
            return out + [f"  would create: {d}" for d in self.missing]
        out = [f"{head}: created {len(self.created)} object(s), "
               f"{len(self.present)} already there"]
        return out + [f"  created: {d}" for d in self.created]


def planned_objects(consortium: Consortium, member: Member) -> list[Planned]:
    """Every object the member's profile asks for, with its parameters bound."""
    base = {"member": member.code, "member_branch": member.branch_for_member(member.code),
            "consortium": consortium.name, "holder_branches": member.holder_branches,
            "consortium_branch": member.consortium_branch}
    planned = []
    for obj in load_profile(member.profile).prepare:
        if not obj.wanted(base):
            continue  # not what this member chose (a branch per member, or the one)
        if obj.for_each == "member":
            planned.append(Planned(obj, base))
            continue
        for other in consortium.members:
            if other.code != member.code:
                planned.append(Planned(obj, {**base, "code": other.code, "name": other.name,
                                             "branch": member.branch_for_member(other.code)}))
    return planned


def missing_objects(conn: Connection, planned: list[Planned]) -> list[Planned]:
    return [p for p in planned if not _present(conn, p)]


def _present(conn: Connection, p: Planned) -> bool:
    return bool(conn.execute(row_exists(p.obj.step, as_binding(dict(p.params)))).scalar())


def prepare_member(consortium: Consortium, member: Member, engine: Engine, *,
                   dry_run: bool = False) -> PrepareReport:
    """Create what is missing (or, dry, list it), in one ILS transaction, each insert run and
    verified as a write-back step is (circhub.tasks.writeback.steps: its look-ups read first,
    the row read back). A failure raises StepFailed, and nothing is created."""
    report = PrepareReport(member.code, member.profile, dry_run=dry_run)
    planned = planned_objects(consortium, member)
    with engine.begin() as conn:
        missing = missing_objects(conn, planned)
        report.present = [p.description for p in planned if p not in missing]
        if dry_run:
            report.missing = [p.description for p in missing]
            return report
        render = column_renderer(conn)  # on this connection: no second one beside it
        for p in missing:
            [done] = run_steps(conn, [p.obj.step], Binding(dict(p.params), render=render),
                               lambda step: [])
            if done.changed:
                report.created.append(p.description)
    return report

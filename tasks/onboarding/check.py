"""Onboarding check: is a member's ILS ready to be synced?

Connects, compares the profile with the live schema, samples rows of each entity through the
same validation a sync uses, checks that what the profile's `[[prepare]]` asks for is there,
rehearses every write-back kind on real rows inside a transaction that is rolled back
(circhub.tasks.onboarding.rehearse), and counts what a backfill would read. Leaves nothing
behind in the ILS or the central store (sampled reader keys are made with a throwaway key).
The CLI's `circhub check MEMBER` prints the report and exits non-zero when the member is not
ready.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from circhub.connections.config import Consortium, Member
from circhub.connections.engines import ConnectionSetupError, member_engine
from circhub.connections.errors import driver_message
from circhub.connections.live_schema import schema_problems
from circhub.connections.profile import load_profile
from circhub.connections.runtime import Runtime
from circhub.connections.sql import key_count_query
from circhub.tasks.onboarding.prepare import missing_objects, planned_objects
from circhub.tasks.onboarding.rehearse import Rehearsal, rehearse_writebacks
from circhub.tasks.sync.extract import (
    entity_query,
    mapped_entities,
    prepare_frame,
    read_entity,
)
from circhub.tasks.sync.validate import validate_extract

SAMPLE_ROWS = 1000
MAX_BAD_SHARE = 0.05  # more failing rows than this in a sample: fix the source first
# A rough end-to-end rate for the backfill estimate: reading (~200k rows/s), validating
# (~400k/s) and merging (~150k/s) one after another, from DESIGN.md's measurements.
BACKFILL_ROWS_PER_SECOND = 70_000


@dataclass
class EntitySample:
    rows: int
    failed: int
    rules: dict[str, int] = field(default_factory=dict)  # rule -> failing rows

    @property
    def bad_share(self) -> float:
        return self.failed / self.rows if self.rows else 0.0


@dataclass
class CheckReport:
    member: str
    profile: str
    reasons: list[str] = field(default_factory=list)  # why the member is not ready
    warnings: list[str] = field(default_factory=list)
    schema_problems: list[str] = field(default_factory=list)
    samples: dict[str, EntitySample] = field(default_factory=dict)
    backfill_rows: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # [[prepare]] objects not there yet
    rehearsals: list[Rehearsal] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.reasons

    @property
    def verdict(self) -> str:
        return "ready" if self.ready else "not ready"

    @property
    def backfill_seconds(self) -> float:
        return sum(self.backfill_rows.values()) / BACKFILL_ROWS_PER_SECOND

    def lines(self) -> list[str]:
        """The report as text, for the CLI."""
        out = [f"member {self.member} ({self.profile}): {self.verdict}"]
        out += [f"  not ready: {r}" for r in self.reasons]
        out += [f"  warning: {w}" for w in self.warnings]
        for entity, s in self.samples.items():
            out.append(f"  sample {entity}: {s.rows} rows, {s.failed} would be quarantined")
        for r in self.rehearsals:
            out.append(f"  rehearsed {r.what}: {'refused' if r.problem else 'ok'}")
        if self.backfill_rows:
            counts = ", ".join(f"{e} {n:,}" for e, n in self.backfill_rows.items())
            out.append(f"  backfill: {counts} (about {self.backfill_seconds / 60:.0f} min)")
        return out


def check_member(context: Runtime | Consortium, member: Member | str,
                 sample_rows: int = SAMPLE_ROWS, max_bad_share: float = MAX_BAD_SHARE
                 ) -> CheckReport:
    runtime = _runtime(context)
    if isinstance(member, str):
        member = runtime.consortium.member(member)
    report = CheckReport(member.code, member.profile)
    engine = _connect(member, report)
    if engine is None:
        return report
    report.schema_problems = schema_problems(load_profile(member.profile), engine)
    report.reasons += report.schema_problems
    if report.schema_problems:
        return report  # sampling would only fail on the same missing names
    try:
        _sample(runtime, member, engine, sample_rows, max_bad_share, report)
        _prepared(runtime.consortium, member, engine, report)
        _rehearse(runtime.consortium, member, engine, report)
        _count(member, engine, report)
    except SQLAlchemyError as exc:
        report.reasons.append(f"reading the ILS failed: {driver_message(exc)}")
    return report


def _runtime(context: Runtime | Consortium) -> Runtime:
    if isinstance(context, Runtime):
        return context
    # No central store is touched; reader keys of the sample are never kept.
    return Runtime(context, store=None, id_key=secrets.token_bytes(32))


def _connect(member: Member, report: CheckReport) -> Engine | None:
    try:
        engine = member_engine(member)
        with engine.connect():
            pass
        return engine
    except ConnectionSetupError as exc:
        report.reasons.append(str(exc))
    except SQLAlchemyError as exc:
        report.reasons.append(
            f"cannot connect to its {member.profile} database: {driver_message(exc)}")
    return None


def _sample(runtime: Runtime, member: Member, engine: Engine, rows: int,
            max_bad_share: float, report: CheckReport) -> None:
    """The first `rows` rows of each entity in cursor order, through the sync's validation."""
    frames = {}
    for entity in mapped_entities(member):
        query = entity_query(member, entity, None).limit(rows)
        frames[entity] = prepare_frame(entity, read_entity(engine, query, entity),
                                       runtime.id_key)
    validated = validate_extract(member.code, frames, runtime.member_view(member),
                                 max_bad_share=1.0)  # judged here, with the check's threshold
    for entity, frame in frames.items():
        rules = {s["rule"]: s["failed"] for s in validated.summary
                 if s["entity"] == entity and s["failed"]}
        failed = sum(1 for b in validated.bad if b.entity == entity)
        sample = report.samples[entity] = EntitySample(len(frame), failed, rules)
        _judge(entity, sample, max_bad_share, report)


def _judge(entity: str, sample: EntitySample, max_bad_share: float,
           report: CheckReport) -> None:
    if sample.rows == 0:
        report.warnings.append(f"{entity}: no rows to sample")
        return
    if not sample.failed:
        return
    rules = ", ".join(f"{rule}={n}" for rule, n in sorted(sample.rules.items()))
    text = (f"{entity}: {sample.failed} of {sample.rows} sampled rows "
            f"({sample.bad_share:.1%}) fail validation: {rules}")
    (report.reasons if sample.bad_share > max_bad_share else report.warnings).append(text)


def _count(member: Member, engine: Engine, report: CheckReport) -> None:
    profile = load_profile(member.profile)
    with engine.connect() as conn:
        for entity in mapped_entities(member):
            query = key_count_query(profile.entities[entity], member.own_branches(),
                                    member.constants)
            report.backfill_rows[entity] = int(conn.execute(query).scalar_one())



SHOWN_MISSING = 5  # a 250-member consortium misses 249 branches: name a few, count the rest


def _prepared(consortium: Consortium, member: Member, engine: Engine,
              report: CheckReport) -> None:
    with engine.connect() as conn:
        report.missing = [p.description for p in
                          missing_objects(conn, planned_objects(consortium, member))]
    if report.missing:
        shown = "; ".join(report.missing[:SHOWN_MISSING])
        more = len(report.missing) - SHOWN_MISSING
        report.reasons.append(
            f"its ILS lacks {len(report.missing)} object(s) the write-backs need: {shown}"
            + (f" (and {more} more)" if more > 0 else "")
            + f"; run `circhub prepare {member.code}`")


def _rehearse(consortium: Consortium, member: Member, engine: Engine,
              report: CheckReport) -> None:
    report.rehearsals, skipped = rehearse_writebacks(consortium, member, engine)
    report.warnings += skipped
    for r in report.rehearsals:
        if r.problem:
            report.reasons.append(f"write-back {r.what} refused: {r.problem}")

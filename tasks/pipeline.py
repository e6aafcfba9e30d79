"""The stages of one member's sync, wired as plain calls (tests and benchmarks use this;
the Prefect flows wire the same stage functions as tasks)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, update

from connections.config import Member
from connections.runtime import Runtime
from domain.schema import sync_runs
from tasks.extract import Extract, extract_member
from tasks.merge import MergeReport, merge_batch
from tasks.validate import Validated, validate_extract


@dataclass
class MemberSync:
    extract: Extract
    validated: Validated
    merged: MergeReport


def sync_member(rt: Runtime, member: Member) -> MemberSync:
    run_id = start_run(rt, member.code)
    try:
        ext = extract_member(rt.consortium, member, rt.store, rt.id_key)
        val = validate_extract(member.code, ext.frames, rt.member_view(member))
        merged = merge_batch(rt.store, rt.consortium, member, ext, val)
    except Exception as exc:
        finish_run(rt, run_id, "failed", None, str(exc))
        raise
    result = MemberSync(ext, val, merged)
    finish_run(rt, run_id, "ok", counts(result), None)
    return result


def counts(s: MemberSync) -> dict:
    return {
        "extracted": s.extract.counts(),
        "quarantined": s.merged.quarantined,
        "merged": s.merged.merged,
        "events": s.merged.events,
        "commands": s.merged.commands,
    }


def start_run(rt: Runtime, member: str) -> int:
    with rt.store.begin() as conn:
        res = conn.execute(insert(sync_runs).values(
            member=member, started_at=datetime.now(), status="running"))
        return res.inserted_primary_key[0]


def finish_run(rt: Runtime, run_id: int, status: str, result: dict | None,
               error: str | None) -> None:
    with rt.store.begin() as conn:
        conn.execute(update(sync_runs).where(sync_runs.c.id == run_id).values(
            finished_at=datetime.now(), status=status, counts=result, error=error))

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
from tasks.merge import MergeReport, hash_good_rows, merge_batch
from tasks.validate import Validated, validate_extract, validate_members


@dataclass
class MemberSync:
    extract: Extract
    validated: Validated
    merged: MergeReport


def sync_member(rt: Runtime, member: Member) -> MemberSync:
    run_id = start_run(rt, member.code)
    try:
        ext = extract_member(rt.consortium, member, rt.store, rt.id_key)
        val = validate_extract(member.code, ext.frames, rt.member_view(member),
                               rt.consortium.max_bad_share)
        merged = merge_batch(rt.store, rt.consortium, member, ext, val)
    except Exception as exc:
        finish_run(rt, run_id, "failed", None, str(exc))
        raise
    result = MemberSync(ext, val, merged)
    finish_run(rt, run_id, "ok", counts(result), None)
    return result


def sync_members(rt: Runtime, members: list[Member]) -> dict[str, MemberSync | Exception]:
    """What a consortium cycle does, as plain calls: extract every member, validate them all
    at once, merge each. A member's failure is its result; the others go on."""
    runs = {m.code: start_run(rt, m.code) for m in members}
    results: dict[str, MemberSync | Exception] = {}
    extracts = {}
    for m in members:
        try:
            extracts[m.code] = extract_member(rt.consortium, m, rt.store, rt.id_key)
        except Exception as exc:  # noqa: BLE001 - recorded as that member's result
            results[m.code] = exc
    views = {code: rt.member_view(rt.consortium.member(code)) for code in extracts}
    checked = validate_members({c: e.frames for c, e in extracts.items()}, views,
                               rt.consortium.max_bad_share)
    hash_good_rows(v for v in checked.values() if not isinstance(v, Exception))
    for code, val in checked.items():
        try:
            if isinstance(val, Exception):
                raise val
            merged = merge_batch(rt.store, rt.consortium, rt.consortium.member(code),
                                 extracts[code], val)
            results[code] = MemberSync(extracts[code], val, merged)
        except Exception as exc:  # noqa: BLE001 - recorded as that member's result
            results[code] = exc
    for code, res in results.items():
        ok = isinstance(res, MemberSync)
        finish_run(rt, runs[code], "ok" if ok else "failed", counts(res) if ok else None,
                   None if ok else str(res))
    return results


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

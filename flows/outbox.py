"""Prefect artifacts of the outbox, published by the push flow (every minute) so the UI shows
next to each run what needs a person: dead-lettered write-backs, open circulation exceptions,
and what write-back would do at members still onboarding (write-back off: dry run).

Each is published only when its table changed since its latest version: a push every minute
would otherwise write three mostly empty artifacts a minute (~4,300 a day) and bury the one
version that shows a change. So a day holds one version per change of each table, one
`push-summary` per push that did something, and one `sync-summary` and `validation-summary`
per sync (288 a day at every 5 minutes)."""

from __future__ import annotations

import json

from prefect.artifacts import Artifact, create_table_artifact

from circhub.connections.profile import load_profile
from circhub.connections.runtime import Runtime
from circhub.tasks.circulation.operators import list_exceptions
from circhub.tasks.writeback.outbox import DEAD, PENDING, list_commands
from circhub.tasks.writeback.push import describe

SHOWN = 200  # rows per artifact; `circhub outbox list` shows the rest


def publish_outbox_artifacts(rt: Runtime) -> dict[str, int]:
    dead = [_dead_row(c) for c in list_commands(rt.store, DEAD, limit=SHOWN)]
    _publish_if_changed(key="outbox-dead-letters", table=dead, description=(
        f"{len(dead)} dead-lettered write-back(s): `circhub outbox retry ID` once the cause "
        "is fixed, or `circhub outbox resolve ID --note ...` if settled by hand"))
    held = [_exception_row(e) for e in list_exceptions(rt.store, limit=SHOWN)]
    _publish_if_changed(key="circulation-exceptions", table=held, description=(
        f"{len(held)} open circulation exception(s), held back from write-back: "
        "`circhub outbox release ID --note ...` lets the hub's rule through"))
    dry = _dry_runs(rt)
    _publish_if_changed(key="outbox-dry-run", table=dry, description=(
        f"{len(dry)} write-back(s) computed for members with write-back off (not applied)"))
    return {"dead": len(dead), "exceptions": len(held), "dry_run": len(dry)}


def _publish_if_changed(key: str, table: list[dict], description: str) -> bool:
    latest = Artifact.get(key)
    if latest is None and not table:
        return False
    if latest is not None and _rows(latest.data) == json.loads(json.dumps(table, default=str)):
        return False
    create_table_artifact(key=key, table=table, description=description)
    return True


def _rows(data) -> list:
    return json.loads(data) if isinstance(data, str) else data


def _dead_row(c) -> dict:
    return {"id": c.id, "member": c.target, "kind": c.kind, "barcode": c.barcode,
            "attempts": c.attempts, "last error": c.last_error or ""}


def _exception_row(e) -> dict:
    return {"id": e.id, "barcode": e.barcode, "reason": e.reason,
            "members": ", ".join(e.members), "detail": e.detail}


def _dry_runs(rt: Runtime) -> list[dict]:
    rows: list[dict] = []
    for member in (m for m in rt.consortium.members if not m.writeback):
        profile = load_profile(member.profile)
        rows += [describe(profile, c) for c in list_commands(rt.store, PENDING, member.code,
                                                              SHOWN - len(rows))]
    return rows

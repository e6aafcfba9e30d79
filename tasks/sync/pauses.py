"""Members paused by an operator: `circhub member pause CODE --reason ...` and `resume`.

A library migrating its ILS over a weekend, or one whose database answers with garbage, is
taken out of the schedule without editing the config and redeploying (the config's
`sync = false` is the permanent switch, for a member still onboarding). Sync and push pass a
paused member by (its write-backs wait pending), `circhub status` shows it with its reason, and
a paused member is never called stale: its silence is on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, select

from circhub.connections.config import Consortium
from circhub.connections.store import upsert_insert
from circhub.domain.schema import member_pauses


@dataclass(frozen=True)
class Pause:
    member: str
    reason: str
    paused_at: datetime


def pause_member(store: Engine, consortium: Consortium, code: str, reason: str) -> Pause:
    """Pause a member of the config (an unknown code raises ConfigError, listing the known)."""
    consortium.member(code)
    if not reason.strip():
        raise ValueError("say why the member is paused (--reason): the next person on duty "
                         "reads it in `circhub status`")
    pause = Pause(code, reason.strip(), datetime.now().replace(microsecond=0))
    with store.begin() as conn:
        stmt = upsert_insert(conn, member_pauses).values(
            member=code, reason=pause.reason, paused_at=pause.paused_at)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["member"],
            set_={"reason": pause.reason, "paused_at": pause.paused_at}))
    return pause


def resume_member(store: Engine, consortium: Consortium, code: str) -> bool:
    """Resume a paused member; False when it was not paused."""
    consortium.member(code)
    with store.begin() as conn:
        return conn.execute(delete(member_pauses).where(member_pauses.c.member == code)
                            ).rowcount > 0


def paused_members(store: Engine) -> dict[str, Pause]:
    with store.connect() as conn:
        rows = conn.execute(select(member_pauses)).all()
    return {r.member: Pause(r.member, r.reason, r.paused_at) for r in rows}


def without_paused(store: Engine, codes: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the codes to work on, the paused ones passed by), each in the order given."""
    paused = paused_members(store)
    return [c for c in codes if c not in paused], [c for c in codes if c in paused]

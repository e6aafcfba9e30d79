"""Rehearse every write-back a member will receive, on its real rows, and roll it all back.

`circhub check` said `ready` while every first push failed: the schema had the columns, but a
real ILS refuses what the hub writes (Koha: `items.holdingbranch` is a foreign key to
`branches`, and no branch stands for the other members; Evergreen: the holder's org unit is
not there, and `asset.copy.circ_lib` is NOT NULL). So each command kind of the member's
profile is applied here as the push applies it (`apply_on`, the same statements), to a real
row of the member (an open loan, one of its own books, a consortium copy), for a holder that is
another member, inside an ILS transaction that is always rolled back. The steps verify
themselves as in a push (circhub.tasks.writeback.steps: an empty look-up, a row not found, a
value that does not read back); what a refused statement lacked is said in plain words
(circhub.tasks.writeback.explain).

Nothing stays in the ILS: every statement runs in the one transaction that is rolled back.
(Sequences and AUTO_INCREMENT counters are not transactional in any database: a rehearsed
insert may use up a number; no row keeps it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, select

from circhub.connections.config import Consortium, Member
from circhub.connections.profile import Profile, load_profile
from circhub.tasks.sync.extract import entity_query
from circhub.tasks.writeback.explain import explain
from circhub.tasks.writeback.push import apply_on
from circhub.tasks.writeback.steps import StepFailed


@dataclass(frozen=True)
class Rehearsal:
    """One command kind tried on one real row: what it was, and what went wrong, if anything."""

    what: str  # "close_loan of loan 12 (book SC0010000001), returned at CQ001"
    problem: str | None = None


@dataclass(frozen=True)
class Sample:
    """Real rows of the member to rehearse on (None: it has none of that sort)."""

    open_loan: tuple[str, str] | None  # (local id, barcode)
    own_item: str | None  # barcode
    copy: str | None  # barcode of a consortium copy, else any item


def rehearse_writebacks(consortium: Consortium, member: Member, engine: Engine,
                        now: datetime | None = None) -> tuple[list[Rehearsal], list[str]]:
    """Every command kind of the member's profile, rehearsed; and the kinds that could not
    be, for want of a real row (a warning: nothing to try them on yet)."""
    profile = load_profile(member.profile)
    away = _other_member(consortium, member)
    with engine.connect() as conn:
        sample = _sample(conn, member, profile)
    # The version guard compares the command's state time with what the ILS shows: a time
    # ahead of any desk scan, so the guard lets the rehearsed update through.
    at = (now or datetime.now()).replace(microsecond=0) + timedelta(days=1)
    done, skipped = [], []
    for what, kinds, payload in _commands(sample, member.code, away, at):
        if not all(k in profile.writeback for k in kinds):
            continue
        if payload is None:
            skipped.append(f"{what}: not rehearsed, no such row in its ILS yet")
            continue
        done.append(_rehearse(engine, member, what, kinds, payload))
    return done, skipped


def _other_member(consortium: Consortium, member: Member) -> str:
    """A holder the member's ILS must be able to name: another member (itself when alone)."""
    others = [m.code for m in consortium.members if m.code != member.code]
    return others[0] if others else member.code


def _commands(sample: Sample, here: str, away: str, at: datetime):
    """(what, command kinds applied in one transaction, payload or None) per rehearsal."""
    base = {"holder": away, "due_at": None, "state_at": _iso(at)}
    loan = sample.open_loan
    yield (f"close_loan of loan {loan[0]} (book {loan[1]}), returned at {away}" if loan
           else "close_loan", ("close_loan",),
           loan and {**base, "barcode": loan[1], "loan_local_id": loan[0],
                     "returned_at": _iso(at), "return_member": away})
    book = sample.own_item
    yield (f"set_item of book {book}, held at {away}" if book else "set_item (held away)",
           ("set_item",), book and {**base, "barcode": book})
    yield (f"set_item of book {book}, lent again at {away} (secondary circulation)" if book
           else "set_item (lent away)", ("set_item",),
           book and {**base, "barcode": book, "due_at": _iso(at + timedelta(days=28))})
    copy = sample.copy
    transfer = copy and {**base, "barcode": copy, "holder": here, "owner": away,
                         "requested_at": _iso(at), "arrived_at": _iso(at)}
    yield (f"transfer of book {copy} home to {away}" if copy else "transfer", ("transfer",),
           transfer)
    yield (f"transfer_arrived of book {copy} at {away}" if copy else "transfer_arrived",
           ("transfer", "transfer_arrived"), transfer)


def _iso(at: datetime) -> str:
    return at.isoformat(sep=" ")


def _rehearse(engine: Engine, member: Member, what: str, kinds: tuple[str, ...],
              payload: dict) -> Rehearsal:
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            for kind in kinds:
                apply_on(conn, load_profile(member.profile), member, kind, payload)
            return Rehearsal(what)
        except StepFailed as failed:
            return Rehearsal(what, problem=explain(member, load_profile(member.profile),
                                                   failed))
        except KeyError as exc:  # a parameter or member constant the profile needs
            return Rehearsal(what, problem=str(exc).strip("'\""))
        finally:
            trans.rollback()


def _sample(conn: Connection, member: Member, profile: Profile) -> Sample:
    loans = _first(conn, member, "loans", lambda c: c.returned_at.is_(None))
    copy_type = profile.copy_item_type
    if copy_type:
        own = _first(conn, member, "items",
                     lambda c: c.item_type.is_(None) | (c.item_type != copy_type))
        copy = _first(conn, member, "items", lambda c: c.item_type == copy_type)
    else:
        own, copy = _first(conn, member, "items", lambda c: None), None
    return Sample(open_loan=(str(loans.local_id), str(loans.barcode)) if loans else None,
                  own_item=own.barcode if own else None,
                  copy=(copy or own).barcode if (copy or own) else None)


def _first(conn: Connection, member: Member, entity: str, condition):
    """The first row of an entity (in the member's own branches) meeting a condition."""
    rows = entity_query(member, entity, None).order_by(None).subquery("sample")
    query = select(rows)
    query = query.where(rows.c.barcode.is_not(None))
    chosen = condition(rows.c)
    if chosen is not None:
        query = query.where(chosen)
    return conn.execute(query.limit(1)).first()

"""Recognition: is the person presenting this ID number a consortium reader, and what do they
hold where? Plus the review list of accounts that contradict their ID number.

`recognise` takes the number in clear and keeps it only long enough to key it; the answer holds
the masked form only. Call it in-process (CLI, a desk integration, a flow's own code), never as
a Prefect task parameter: task parameters are stored by the Prefect API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select

from circhub.domain.identity import IdStatus, check_id_number, mask_id_number, reader_key
from circhub.domain.schema import items, loans, reader_accounts, readers


@dataclass(frozen=True)
class AccountView:
    member: str
    local_id: str
    card_masked: str | None
    flag: str | None


@dataclass(frozen=True)
class LoanView:
    member: str  # the lending member
    barcode: str
    owner: str | None
    issued_at: datetime
    due_at: datetime | None


@dataclass
class Recognition:
    id_masked: str
    id_status: str  # valid | permit | needs_review | invalid
    rule: str | None = None  # why an invalid number was refused
    is_reader: bool = False
    home_member: str | None = None
    accounts: list[AccountView] = field(default_factory=list)
    on_loan: list[LoanView] = field(default_factory=list)

    @property
    def members(self) -> list[str]:
        return sorted({a.member for a in self.accounts})


def recognise(store: Engine, id_key: bytes, raw_number: str | None) -> Recognition:
    """What the consortium knows of the holder of this ID number (masked in the answer)."""
    check = check_id_number(raw_number)
    answer = Recognition(mask_id_number(raw_number), str(check.status), check.rule)
    if check.status not in (IdStatus.VALID, IdStatus.PERMIT):
        return answer  # unverifiable numbers were never keyed, so they cannot match anyone
    key = reader_key(check.normalized, id_key)
    with store.connect() as conn:
        person = conn.execute(select(readers).where(readers.c.reader_key == key)).first()
        if person is None:
            return answer
        # The mask of the number presented, in canonical form (never the stored 15-digit one).
        answer.is_reader, answer.home_member = True, person.home_member
        answer.id_masked = mask_id_number(check.normalized)
        answer.accounts = _accounts(conn, key)
        answer.on_loan = _open_loans(conn, key)
    return answer


def _accounts(conn, key: str) -> list[AccountView]:
    q = (select(reader_accounts.c.member, reader_accounts.c.local_id,
                reader_accounts.c.card_masked, reader_accounts.c.flag)
         .where(reader_accounts.c.reader_key == key)
         .order_by(reader_accounts.c.member, reader_accounts.c.local_id))
    return [AccountView(*r) for r in conn.execute(q)]


def _open_loans(conn, key: str) -> list[LoanView]:
    # returned_at is the consortium's view: a book returned at another member is no longer
    # on loan, even before its lending ILS has been told.
    q = (select(loans.c.member, loans.c.barcode, items.c.owner, loans.c.issued_at,
                loans.c.due_at)
         .join_from(loans, items, items.c.barcode == loans.c.barcode, isouter=True)
         .where(loans.c.reader_key == key, loans.c.returned_at.is_(None),
                loans.c.source_returned_at.is_(None))
         .order_by(loans.c.due_at, loans.c.barcode))
    return [LoanView(*r) for r in conn.execute(q)]


@dataclass(frozen=True)
class FlaggedAccount:
    member: str
    local_id: str
    card_masked: str | None
    id_masked: str
    flag: str
    home_member: str | None


def flagged_accounts(store: Engine, member: str | None = None,
                     limit: int = 100) -> list[FlaggedAccount]:
    """Accounts whose record contradicts their ID number: the review list for people."""
    q = (select(reader_accounts.c.member, reader_accounts.c.local_id,
                reader_accounts.c.card_masked, readers.c.id_masked, reader_accounts.c.flag,
                readers.c.home_member)
         .join_from(reader_accounts, readers,
                    readers.c.reader_key == reader_accounts.c.reader_key)
         .where(reader_accounts.c.flag.is_not(None))
         .order_by(reader_accounts.c.member, reader_accounts.c.local_id).limit(limit))
    if member:
        q = q.where(reader_accounts.c.member == member)
    with store.connect() as conn:
        return [FlaggedAccount(*r) for r in conn.execute(q)]

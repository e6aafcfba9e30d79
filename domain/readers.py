"""Rules about one person across many member accounts. Pure: no I/O, no Prefect, no logging.

One reader is one ID number (keyed by ``circhub.domain.identity.reader_key``); a reader account is
that
person's local record at one member. An account whose own birth date or sex contradicts the ID
number is *not merged blindly*, which here means:

- it stays linked to the reader (the ID number passed its check character, and the loans on that
  account are that person's as far as the member's ILS knows), but carries a flag naming every
  contradiction (``birth_date_mismatch``, ``sex_mismatch``), shown by ``circhub reader review``
  and ``circhub reader lookup`` for a person at that member to check;
- the reader's own facts (birth date, sex) come from the ID number only, never from an account;
- a flagged account never decides the reader's home member while an unflagged one exists;
- fixing the record at the member clears the flag on the next sync (both fields are hashed).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from circhub.domain.identity import normalize_id_number

BIRTH_DATE_MISMATCH = "birth_date_mismatch"
SEX_MISMATCH = "sex_mismatch"

# ILS kinds spell sex differently; anything not listed (O, U, blank) is "unknown": no flag.
_SEX_SPELLINGS = {
    "M": "M", "MALE": "M", "1": "M", "男": "M",
    "F": "F", "FEMALE": "F", "2": "F", "女": "F",
}
# Domain separation: a card number that happens to be the ID number must not hash to its key.
_CARD_CONTEXT = b"circhub:card\x1f"
_UNLINKABLE_CONTEXT = b"circhub:unlinkable\x1f"
_FINGERPRINT_INPUT = b"circhub:reader-key-check:v1"


def normalise_sex(value) -> str | None:
    if value is None:
        return None
    return _SEX_SPELLINGS.get(str(value).strip().upper())


def _day(value) -> date | None:
    if value is None or value != value:  # None / NaT
        return None
    return value.date() if isinstance(value, datetime) else value


def account_flags(row: dict) -> str | None:
    """Every way the member's record contradicts the ID number, comma-separated, or None.

    `row` holds the ILS's own `birth_date` and `sex` and the ID-derived `id_birth_date`,
    `id_sex` (see ``circhub.domain.prepare.protect_readers``). A fact the ILS leaves blank
    contradicts
    nothing.
    """
    flags = []
    stored, from_id = _day(row.get("birth_date")), _day(row.get("id_birth_date"))
    if stored is not None and from_id is not None and stored != from_id:
        flags.append(BIRTH_DATE_MISMATCH)
    sex, id_sex = normalise_sex(row.get("sex")), row.get("id_sex")
    if sex is not None and id_sex is not None and sex != id_sex:
        flags.append(SEX_MISMATCH)
    return ",".join(flags) or None


@dataclass(frozen=True)
class AccountFacts:
    """What choosing a home member needs to know of one account."""

    member: str  # the member the account's own branch belongs to
    registered_on: datetime | None
    flag: str | None


def choose_home(accounts: Iterable[AccountFacts], current: str | None) -> str | None:
    """The home member: where the person first registered, among unflagged accounts if any.

    Ties (same registration day, or no dates at all) keep the current home, so a re-sync never
    makes it flap between members.
    """
    accounts = list(accounts)
    trusted = [a for a in accounts if a.flag is None] or accounts
    if not trusted:
        return current
    dated = [a.registered_on for a in trusted if a.registered_on is not None]
    first = min(dated) if dated else None
    earliest = [a for a in trusted if _day(a.registered_on) == _day(first)] if first else trusted
    members = sorted({a.member for a in earliest})
    return current if current in members else members[0]


def card_key(card_number: str | None, key: bytes) -> str | None:
    """Keyed hash of a card number, so duplicates can be found without keeping the number."""
    value = normalize_id_number(card_number)  # same canonical form: spacing, width, case
    if not value:
        return None
    return hmac.new(key, _CARD_CONTEXT + value.encode(), hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """A check value naming a key without revealing it: which key the central store is on."""
    return hmac.new(key, _FINGERPRINT_INPUT, hashlib.sha256).hexdigest()[:16]


def unlinkable_key(old_reader_key: str, new_key: bytes) -> str:
    """The new key of a reader no source still holds: keeps its accounts and loans together
    under the new key, though no ID number can ever be matched to it again."""
    return hmac.new(new_key, _UNLINKABLE_CONTEXT + old_reader_key.encode(),
                    hashlib.sha256).hexdigest()

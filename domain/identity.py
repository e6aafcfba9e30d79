"""Reader identity numbers: validate, normalise, mask and key them.

Chinese readers identify with a resident ID card or a social security card; the social security
number IS the citizen ID number (GB 11643-1999). The hub never stores or logs that number in
clear: it keeps ``reader_key`` (HMAC-SHA256, for joins across member libraries) and
``mask_id_number`` (for people). Everything here is pure: stdlib only, no I/O, no logging.

Nothing in this module puts a number into an exception message or a repr, so a traceback or a
debug print of an ``IdCheck`` cannot leak one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum


class IdStatus(StrEnum):
    """Outcome of ``check_id_number``; the values are stored in a database column."""

    VALID = "valid"  # mainland resident ID, 18 chars, all checks pass (incl. upgraded 15-digit)
    PERMIT = "permit"  # recognised non-mainland document number, accepted
    NEEDS_REVIEW = "needs_review"  # looks like an ID of some kind but cannot be verified
    INVALID = "invalid"  # definitely wrong: bad check char, impossible date, unknown area...


@dataclass(frozen=True)
class IdCheck:
    status: IdStatus
    # repr=False: an IdCheck that ends up in a log line or a test failure must not show the
    # number in clear.
    normalized: str | None = field(repr=False)  # canonical 18 chars when VALID or PERMIT
    rule: str | None  # snake_case name of the rule broken; None when nothing was broken
    birth_date: date | None  # None when unreadable or implausible (see _birth_date)
    sex: str | None  # "M" / "F" when the number encodes it
    kind: str  # "resident_id", "resident_id_15", "hmt_residence_permit", ...


# Province-level codes of GB/T 2260 used by resident ID numbers (71 = Taiwan is listed in the
# standard). Deliberately no county list: it changes every year, and a stale copy would reject
# real readers, while the check character already catches nearly all typos.
_MAINLAND_PROVINCES = frozenset(
    str(code)
    for span in ((11, 15), (21, 23), (31, 37), (41, 46), (50, 54), (61, 65))
    for code in range(span[0], span[1] + 1)
)
_RESIDENT_PROVINCES = _MAINLAND_PROVINCES | {"71"}
# Residence permits for Hong Kong (81), Macau (82) and Taiwan (83) residents, issued since 2018,
# carry exactly 810000 / 820000 / 830000 as area code; no resident ID uses these prefixes.
_HMT_PERMIT_PREFIXES = frozenset({"81", "82", "83"})
_EARLIEST_BIRTH = date(1900, 1, 1)

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)  # 2**(17-i) mod 11
_CHECK_CHARS = "10X98765432"  # indexed by the weighted sum mod 11

# re.ASCII: after normalisation only ASCII digits count; str.isdigit() would accept "²" or
# Arabic-Indic digits and int() would then read them.
_BODY17 = re.compile(r"[0-9]{17}", re.ASCII)
_ID18 = re.compile(r"[0-9]{17}[0-9X]", re.ASCII)
_LEGACY15 = re.compile(r"[0-9]{15}", re.ASCII)
# Digits with at most a trailing X: a resident ID with characters missing or added.
_DIGITS_ONLY = re.compile(r"[0-9]+X?", re.ASCII)
# Permanent residence card for foreigners, 2004/2017 versions: 3-letter country code + 12 digits.
# No public check algorithm, so it can only go to a person.
_OLD_FOREIGN = re.compile(r"[A-Z]{3}[0-9]{12}", re.ASCII)
# Passports, Hong Kong identity cards (A123456(7)), Macau cards...: plausible, not checkable.
_REVIEWABLE = re.compile(r"(?=.*[0-9])[A-Z0-9()]{8,20}", re.ASCII)

# Privacy scanner: an 18-char ID or a 15-digit legacy number not glued to other digits, so a
# 20-digit run (barcode, order number) does not fire. \d is deliberately Unicode-wide: a
# full-width number in a log is a leak too.
ID_NUMBER_PATTERN: re.Pattern[str] = re.compile(r"(?<!\d)(?:\d{17}[\dXx]|\d{15})(?!\d)")

# Full-width ASCII block (U+FF01..U+FF5E) maps onto ASCII by a fixed offset: Chinese input
# methods often produce full-width digits and Ｘ.
_FULLWIDTH_TO_ASCII = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}
# Zero-width characters come along with copy-paste from web pages and are not whitespace.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
_TRANSLATION = _FULLWIDTH_TO_ASCII | _INVISIBLE

_UNVERIFIABLE = "id_format_unverifiable"


def normalize_id_number(raw: str | None) -> str:
    """Canonical form: no whitespace (incl. U+3000), full-width to ASCII, upper case."""
    if raw is None:
        return ""
    text = str(raw).translate(_TRANSLATION)
    return "".join(text.split()).upper()  # str.split() knows all Unicode whitespace


def check_character(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a 17-digit body."""
    if not _BODY17.fullmatch(first17):
        raise ValueError("check_character needs exactly 17 ASCII digits")
    total = sum(int(digit) * weight for digit, weight in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def upgrade_15_to_18(number15: str) -> str:
    """First-generation 15-digit number to 18 chars: century "19" and a check character."""
    if not _LEGACY15.fullmatch(number15):
        raise ValueError("upgrade_15_to_18 needs exactly 15 ASCII digits")
    body = number15[:6] + "19" + number15[6:]  # legacy numbers only ever encoded 19YY
    return body + check_character(body)


def check_id_number(raw: str | None, *, today: date | None = None) -> IdCheck:
    """Classify a reader's identity number; never raises for string input."""
    today = today or date.today()
    number = normalize_id_number(raw)
    if not number:
        return _invalid("id_empty", "unknown")
    if _ID18.fullmatch(number):
        return _check_18(number, today)
    if _LEGACY15.fullmatch(number):
        return _check_15(number, today)
    if _DIGITS_ONLY.fullmatch(number):
        return _invalid("id_length", "unknown")
    if _OLD_FOREIGN.fullmatch(number):
        return _review("foreign_permanent_residence")
    if _REVIEWABLE.fullmatch(number):
        return _review("unknown")
    return _invalid("id_format", "unknown")


def mask_id_number(value: str | None) -> str:
    """Masked form for people: 510104********1234; short strings reveal at most half."""
    text = normalize_id_number(value)  # masking the raw form could leak through its spacing
    n = len(text)
    if n >= 18:
        head, tail = 6, 4  # the customary Chinese mask: area code and last four
    else:
        head = tail = min(2, n // 4)  # 2 * (n // 4) <= n / 2: never more than half
    return text[:head] + "*" * (n - head - tail) + text[n - tail :]


def reader_key(normalized: str, key: bytes) -> str:
    """HMAC-SHA256 hex digest of the number: the join key that replaces it in storage."""
    if not key:
        raise ValueError("reader_key needs a non-empty secret key")
    # Normalising again is idempotent and keeps one person on one key even if a caller forgot.
    value = normalize_id_number(normalized)
    if not value:
        # Hashing "" would give every reader without a number the same key and merge them.
        raise ValueError("reader_key needs a non-empty id number")
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def looks_like_id_number(text: str) -> bool:
    """True if the text contains something shaped like an ID number (privacy scanner)."""
    return ID_NUMBER_PATTERN.search(text) is not None


def _check_18(number: str, today: date) -> IdCheck:
    prefix = number[:2]
    if number[0] == "9":
        # Foreigners' permanent residence ID card, 18-digit version: "9", issuing province (2),
        # country code (3, not checked: no stable list worth embedding), birth date, sequence,
        # check char. The sequence's parity is not documented as sex, so sex stays None.
        area_ok = number[1:3] in _MAINLAND_PROVINCES
        return _verify(number, "foreign_permanent_residence", area_ok, IdStatus.PERMIT, None, today)
    sex = _sex(number[16])
    if prefix in _HMT_PERMIT_PREFIXES:
        area_ok = number[2:6] == "0000"
        return _verify(number, "hmt_residence_permit", area_ok, IdStatus.PERMIT, sex, today)
    area_ok = prefix in _RESIDENT_PROVINCES
    return _verify(number, "resident_id", area_ok, IdStatus.VALID, sex, today)


def _verify(
    number: str, kind: str, area_ok: bool, ok_status: IdStatus, sex: str | None, today: date
) -> IdCheck:
    """Area, then birth date, then check char: the first rule broken names the failure."""
    birth = _birth_date(number[6:14], today)
    if not area_ok:
        rule = "id_area_code"
    elif birth is None:
        rule = "id_birth_date"
    elif number[17] != check_character(number[:17]):
        rule = "id_check_digit"
    else:
        return IdCheck(ok_status, number, None, birth, sex, kind)
    return IdCheck(IdStatus.INVALID, None, rule, birth, sex, kind)


def _check_15(number: str, today: date) -> IdCheck:
    # Legacy numbers carry no check char; area and date are all that can be verified.
    kind = "resident_id_15"
    birth = _birth_date("19" + number[6:12], today)
    sex = _sex(number[14])
    if number[:2] not in _RESIDENT_PROVINCES:
        return IdCheck(IdStatus.INVALID, None, "id_area_code", birth, sex, kind)
    if birth is None:
        return IdCheck(IdStatus.INVALID, None, "id_birth_date", birth, sex, kind)
    return IdCheck(IdStatus.VALID, upgrade_15_to_18(number), None, birth, sex, kind)


def _birth_date(yyyymmdd: str, today: date) -> date | None:
    """The encoded date if it is real and plausible (1900-01-01..today), else None."""
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return None
    return born if _EARLIEST_BIRTH <= born <= today else None


def _sex(sequence_digit: str) -> str:
    return "M" if int(sequence_digit) % 2 else "F"  # GB 11643: odd = male, even = female


def _invalid(rule: str, kind: str) -> IdCheck:
    return IdCheck(IdStatus.INVALID, None, rule, None, None, kind)


def _review(kind: str) -> IdCheck:
    return IdCheck(IdStatus.NEEDS_REVIEW, None, _UNVERIFIABLE, None, None, kind)

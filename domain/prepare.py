"""Turn extracted rows into canonical, privacy-safe frames with the computed check columns.

`protect_readers` runs first, inside extraction: the raw ID and card numbers are replaced by
a keyed hash and masked forms, so no later stage, Prefect result or log can hold them.
The `chk_*` columns are the row-level facts the Great Expectations suites test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from domain.encoding import normalise_text
from domain.identity import check_id_number, mask_id_number, reader_key
from domain.readers import card_key
from domain.records import CANONICAL_FIELDS

FUTURE_TOLERANCE = timedelta(minutes=10)
# Which human_text fields could not be decoded ("name_encoding,title_encoding"), or None.
TEXT_PROBLEM = "text_problem"


@dataclass(frozen=True)
class MemberView:
    """What the rules need to know of the member being synced (no I/O, no config types)."""

    code: str
    known_members: frozenset[str]
    branch_to_member: Callable[[str | None], str | None]
    owner_of_barcode: Callable[[str | None], str | None]
    copy_item_type: str | None


def coerce_types(entity: str, df: pd.DataFrame) -> pd.DataFrame:
    """Source drivers return dates as strings (SQLite), datetimes or dates: make one shape.

    A value that is not a date ('0000-00-00', garbage) becomes NaT and fails validation
    instead of failing the whole batch. Names and titles are decoded by `domain.encoding`;
    the ones that cannot be trusted are blanked and named in `text_problem`.
    """
    out = df.copy()
    problems = pd.Series([None] * len(out), index=out.index, dtype=object)
    for f in CANONICAL_FIELDS[entity]:
        if f.name not in out:
            out[f.name] = None
        col = out[f.name]
        if f.kind in ("datetime", "date"):
            out[f.name] = _datetimes(col)
        elif f.kind == "int":
            out[f.name] = pd.to_numeric(col, errors="coerce").fillna(0).astype("int64")
        elif f.kind == "human_text":
            out[f.name], bad = _human_text(col)
            problems[bad] = [_join(p, f"{f.name}_encoding") for p in problems[bad]]
        else:
            out[f.name] = col.map(_text, na_action="ignore").astype(object)
    if any(f.kind == "human_text" for f in CANONICAL_FIELDS[entity]):
        out[TEXT_PROBLEM] = problems
    return out


def _datetimes(col: pd.Series) -> pd.Series:
    """Naive local times, as the rest of the hub keeps them (timestamptz sources arrive aware)."""
    first = col.dropna().head(1)
    if not first.empty and getattr(first.iloc[0], "tzinfo", None) is not None:
        local = datetime.now().astimezone().tzinfo
        aware = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
        return aware.dt.tz_convert(local).dt.tz_localize(None)
    return pd.to_datetime(col, errors="coerce", format="mixed")


def _human_text(col: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The normalised texts, and a mask of the values that could not be decoded."""
    results = [normalise_text(None if _missing(v) else v) for v in col]
    texts = pd.Series([r.text for r in results], index=col.index, dtype=object)
    bad = pd.Series([r.rule is not None for r in results], index=col.index, dtype=bool)
    return texts, bad


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _join(existing: str | None, name: str) -> str:
    return f"{existing},{name}" if existing else name


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def protect_readers(df: pd.DataFrame, key: bytes) -> pd.DataFrame:
    """Replace id_number and card_number by reader_key, masked forms and the ID check result."""
    ids, cards = _present(df["id_number"]), _present(df["card_number"])
    checks = [check_id_number(v) for v in ids]
    out = df.drop(columns=["id_number", "card_number"])
    out["reader_key"] = [reader_key(c.normalized, key) if c.normalized else None for c in checks]
    out["id_masked"] = [mask_id_number(v) for v in ids]
    out["id_status"] = [str(c.status) for c in checks]
    out["id_rule"] = [c.rule for c in checks]
    out["id_birth_date"] = [c.birth_date for c in checks]
    out["id_sex"] = [c.sex for c in checks]
    out["card_masked"] = [mask_id_number(v) if v else None for v in cards]
    # Keyed like the ID: duplicate cards can be found once the numbers are gone.
    out["card_key"] = [card_key(v, key) for v in cards]
    return out


def _present(col: pd.Series) -> list[str | None]:
    """Values with every missing marker as None: pandas hands a NULL over as NaN, and
    str(NaN) would become the 'number' "NAN" (a NULL card looked like a malformed ID)."""
    return [None if v is None or (not isinstance(v, str) and pd.isna(v)) else v for v in col]


def _known(series: pd.Series, view: MemberView) -> pd.Series:
    return series.map(lambda b: view.branch_to_member(b) in view.known_members)


def _not_future(df: pd.DataFrame, now: datetime) -> pd.Series:
    return (df["updated_at"].isna() | (df["updated_at"] <= now + FUTURE_TOLERANCE)).astype(bool)


def add_checks(entity: str, df: pd.DataFrame, view: MemberView, now: datetime) -> pd.DataFrame:
    out = df.copy()
    out["chk_not_future"] = _not_future(out, now)
    if any(f.kind == "human_text" for f in CANONICAL_FIELDS[entity]):
        problems = out[TEXT_PROBLEM] if TEXT_PROBLEM in out else pd.Series(None, index=out.index)
        out["chk_text_encoding"] = problems.isna().astype(bool)
    if entity == "readers":
        out["chk_member_known"] = _known(out["branch"], view)
    elif entity == "items":
        out["is_copy"] = out["barcode"].map(lambda b: view.owner_of_barcode(b) != view.code)
        out["chk_barcode_owner"] = [
            _barcode_ok(view, b, t) for b, t in zip(out["barcode"], out["item_type"], strict=True)
        ]
        out["chk_member_known"] = _known(out["home_branch"], view) & _known(
            out["holding_branch"], view
        )
    elif entity == "loans":
        issued, due, ret = out["issued_at"], out["due_at"], out["returned_at"]
        out["chk_issued_le_due"] = (issued.notna() & due.notna() & (issued <= due)).astype(bool)
        out["chk_issued_le_returned"] = (ret.isna() | (issued <= ret)).astype(bool)
        known = _known(out["branch"], view)
        back = out["return_branch"].isna() | _known(out["return_branch"], view)
        out["chk_member_known"] = (known & back).astype(bool)
    return out


def _barcode_ok(view: MemberView, barcode: str | None, item_type: str | None) -> bool:
    """A member's own item carries its prefix; a consortium copy carries another member's."""
    owner = view.owner_of_barcode(barcode)
    if owner is None:
        return False
    is_copy_type = view.copy_item_type is not None and item_type == view.copy_item_type
    if owner == view.code:
        return not is_copy_type
    return is_copy_type or view.copy_item_type is None

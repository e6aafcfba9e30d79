"""Turn extracted rows into canonical, privacy-safe frames with the computed check columns.

`protect_readers` runs first, inside extraction: the raw ID and card numbers are replaced by
a keyed hash and masked forms, so no later stage, Prefect result or log can hold them.
`add_checks` computes the row facts the Great Expectations rules read that no source column
holds (the member a branch maps to, a barcode's owner); everything else GX checks itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from circhub.domain.encoding import normalise_text
from circhub.domain.identity import check_id_number, mask_id_number, reader_key
from circhub.domain.readers import card_key
from circhub.domain.records import fields, member_column, spec

FUTURE_TOLERANCE = timedelta(minutes=10)  # clocks of member servers drift
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
    instead of failing the whole batch. Names and titles are decoded by `circhub.domain.encoding`;
    the ones that cannot be trusted are blanked and named in `text_problem`.
    """
    out = df.copy(deep=False)  # pandas copy-on-write: columns are replaced, never changed
    problems = pd.Series([None] * len(out), index=out.index, dtype=object)
    for f in fields(entity):
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
            out[f.name] = _texts(col)
    if any(f.kind == "human_text" for f in fields(entity)):
        out[TEXT_PROBLEM] = problems
    return out


def _datetimes(col: pd.Series) -> pd.Series:
    """Naive local times, as the rest of the hub keeps them (timestamptz sources arrive aware),
    in microseconds, as the databases keep them: pandas picks the unit from the values (dates
    come as seconds), and frames of different units joined take the finest, where a date like
    9999-12-31 no longer fits."""
    first = col.dropna().head(1)
    if not first.empty and getattr(first.iloc[0], "tzinfo", None) is not None:
        local = datetime.now().astimezone().tzinfo
        aware = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
        return aware.dt.tz_convert(local).dt.tz_localize(None).dt.as_unit("us")
    return pd.to_datetime(col, errors="coerce", format="mixed").dt.as_unit("us")


def _human_text(col: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The normalised texts, and a mask of the values that could not be decoded. Decoded once
    per distinct value: a backfill chunk's titles are mostly unique, but a profile that maps
    no title gives 50,000 NULLs, and each call costs ~1 µs."""
    present = col.notna()
    try:
        results = {v: normalise_text(v) for v in col[present].unique()}
    except TypeError:  # unhashable values (memoryview from a bytea column): one by one
        results = None
    if results is None:
        found = [normalise_text(v if p else None) for v, p in zip(col, present, strict=True)]
        return (pd.Series([r.text for r in found], index=col.index, dtype=object),
                pd.Series([r.rule is not None for r in found], index=col.index, dtype=bool))
    texts = col.map({v: r.text for v, r in results.items()}).astype(object)
    bad = col.map({v: r.rule is not None for v, r in results.items()})
    return texts.where(present, None), bad.where(present, False).astype(bool)


def _join(existing: str | None, name: str) -> str:
    return f"{existing},{name}" if existing else name


def _texts(col: pd.Series) -> pd.Series:
    """`_text` over a column, vectorised where the driver gave one type (ints or strings, as
    PostgreSQL and MariaDB do), else once per distinct value."""
    if col.dtype.kind in "iu":  # an integer key: never missing, never padded
        return col.astype(str).astype(object)
    if pd.api.types.is_string_dtype(col) and col.dtype != object:
        # str.strip through map(): ~60 ns a value, against ~90 for pandas' .str.strip()
        present = col.notna().to_numpy()
        values = col.tolist()
        stripped = pd.Series(list(map(str.strip, values)) if present.all() else
                             [v.strip() if p else None for v, p in zip(values, present,
                                                                        strict=True)],
                             index=col.index, dtype=object)
        return stripped.where(stripped.notna() & (stripped != ""), None)
    values = col.dropna().unique()
    if len(values) * 2 > len(col):
        return col.map(_text, na_action="ignore").astype(object)
    texts = {v: _text(v) for v in values}
    return col.map(texts).astype(object).where(col.notna(), None)


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
    # Masked in the number's canonical form: a legacy 15-digit number shows as the 18-digit
    # one it stands for, so one person has one masked form everywhere.
    out["id_masked"] = [mask_id_number(c.normalized or v) for c, v in zip(checks, ids,
                                                                            strict=True)]
    out["id_status"] = [str(c.status) for c in checks]
    out["id_rule"] = [c.rule for c in checks]
    out["id_birth_date"] = [c.birth_date for c in checks]
    out["id_sex"] = [c.sex for c in checks]
    out["card_masked"] = [_mask_card(v, c) for v, c in zip(cards, checks, strict=True)]
    # Keyed like the ID: duplicate cards can be found once the numbers are gone.
    out["card_key"] = [card_key(v, key) for v in cards]
    return out


def _mask_card(card: str | None, id_check) -> str | None:
    """A card that is the reader's ID number is masked like it (in its canonical form)."""
    if not card:
        return None
    same = id_check.normalized and check_id_number(card).normalized == id_check.normalized
    return mask_id_number(id_check.normalized if same else card)


def _present(col: pd.Series) -> list[str | None]:
    """Values with every missing marker as None: pandas hands a NULL over as NaN, and
    str(NaN) would become the 'number' "NAN" (a NULL card looked like a malformed ID)."""
    return [None if v is None or (not isinstance(v, str) and pd.isna(v)) else v for v in col]


def add_checks(entity: str, df: pd.DataFrame, view: MemberView) -> pd.DataFrame:
    """The row facts the entity's rules read that no source column holds: the member each
    branch field maps to, and the entity's named facts (`FACTS`)."""
    s = spec(entity)
    out = df.copy(deep=False)
    for name in s.member_fields:
        out[member_column(name)] = _members(out[name], view, required=_required(s, name))
    if s.has_human_text() and TEXT_PROBLEM not in out:
        out[TEXT_PROBLEM] = None
    for fact in s.facts:
        out = FACTS[fact](out, view)
    return out


def _required(s, name: str) -> bool:
    return any(f.name == name and f.required for f in s.fields)


def _members(series: pd.Series, view: MemberView, required: bool) -> pd.Series:
    """The member each branch code maps to, looked up once per distinct code. A missing code
    of a required field maps to "" (never a member), so `member_code_known` fails for it."""
    mapped = {b: view.branch_to_member(b) for b in series.dropna().unique()}
    out = series.map(mapped).astype(object)
    return out.where(series.notna(), "" if required else None)


def _barcode_owner(df: pd.DataFrame, view: MemberView) -> pd.DataFrame:
    """Items: whose barcode prefix a barcode carries, whether the row is a consortium copy
    (a foreign book's local record), and whether the two agree with the item type."""
    owners = df["barcode"].map(view.owner_of_barcode, na_action="ignore")
    return df.assign(is_copy=(owners != view.code).astype(bool),
                     barcode_owner_ok=_barcodes_ok(view, owners, df["item_type"]))


FACTS = {"barcode_owner": _barcode_owner}


def _barcodes_ok(view: MemberView, owners: pd.Series, item_types: pd.Series) -> pd.Series:
    """A member's own item carries its prefix; a consortium copy carries another member's."""
    copy_type = view.copy_item_type
    is_copy_type = (item_types == copy_type) if copy_type is not None else False
    own = owners == view.code
    elsewhere_ok = is_copy_type | (copy_type is None)
    return (owners.notna() & ((own & ~is_copy_type) | (~own & elsewhere_ok))).astype(bool)

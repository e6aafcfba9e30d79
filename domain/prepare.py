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
    # `owner_of_barcode` over a list in one call (a backfill chunk's 100,000 barcodes); None:
    # called once a barcode
    owners_of_barcodes: Callable[[list], list] | None = None


def coerce_types(entity: str, df: pd.DataFrame) -> pd.DataFrame:
    """Source drivers return dates as strings (SQLite), datetimes or dates: make one shape.

    A value that is not a date ('0000-00-00', garbage) becomes NaT and fails validation
    instead of failing the whole batch. Names and titles are decoded by `circhub.domain.encoding`;
    the ones that cannot be trusted are blanked and named in `text_problem`. A missing value
    is None in every text column (never NaN).

    Each column is made once and the frame is built once at the end: a sync's delta is ~20 rows
    a member, where pandas' fixed cost per operation (~50 µs) is the whole cost, so the text
    columns go through plain lists rather than chains of masks.
    """
    columns = {name: df[name] for name in df.columns}
    problems: list[str | None] = [None] * len(df)
    for f in fields(entity):
        col = columns.get(f.name)
        if col is None:
            col = pd.Series([None] * len(df), index=df.index, dtype=object)
        if f.kind in ("datetime", "date"):
            columns[f.name] = _datetimes(col)
        elif f.kind == "int":
            columns[f.name] = pd.to_numeric(col, errors="coerce").fillna(0).astype("int64")
        elif f.kind == "human_text":
            columns[f.name], bad = _human_text(col)
            problems = [_join(p, f"{f.name}_encoding") if b else p
                        for p, b in zip(problems, bad, strict=True)]
        else:
            columns[f.name] = _texts(col)
    if any(f.kind == "human_text" for f in fields(entity)):
        columns[TEXT_PROBLEM] = pd.Series(problems, index=df.index, dtype=object)
    return pd.DataFrame(columns, index=df.index)


def _datetimes(col: pd.Series) -> pd.Series:
    """Naive local times, as the rest of the hub keeps them (timestamptz sources arrive aware),
    in microseconds, as the databases keep them: pandas picks the unit from the values (dates
    come as seconds), and frames of different units joined take the finest, where a date like
    9999-12-31 no longer fits."""
    if _aware(col):
        local = datetime.now().astimezone().tzinfo
        aware = pd.to_datetime(col, errors="coerce", utc=True, format="mixed")
        return aware.dt.tz_convert(local).dt.tz_localize(None).dt.as_unit("us")
    return pd.to_datetime(col, errors="coerce", format="mixed").dt.as_unit("us")


def _aware(col: pd.Series) -> bool:
    """Whether the column holds times with a zone: its dtype says, once pandas typed it;
    else its first value does (strings never do: they are read as local times)."""
    if col.dtype.kind == "M":
        return getattr(col.dtype, "tz", None) is not None
    first = next((v for v in col.tolist() if not missing(v)), None)
    return getattr(first, "tzinfo", None) is not None


def missing(value) -> bool:
    """A missing value, whatever a driver or pandas made of it: None, NaN, NaT or pd.NA."""
    # NaN and NaT are not equal to themselves; pd.NA answers NA to any comparison
    return value is None or value is pd.NA or value != value


def _human_text(col: pd.Series) -> tuple[pd.Series, list[bool]]:
    """The normalised texts, and which values could not be decoded. Decoded once per distinct
    value: a backfill chunk's titles are mostly unique, but a profile that maps no title gives
    50,000 NULLs, and each call costs ~1 µs."""
    values = col.tolist()
    present = [not missing(v) for v in values]
    try:
        results = {v: normalise_text(v) for v, p in zip(values, present, strict=True) if p}
        found = [results[v] if p else None for v, p in zip(values, present, strict=True)]
    except TypeError:  # unhashable values (memoryview from a bytea column): one by one
        found = [normalise_text(v) if p else None for v, p in zip(values, present, strict=True)]
    texts = [r.text if r else None for r in found]
    return (pd.Series(texts, index=col.index, dtype=object),
            [r is not None and r.rule is not None for r in found])


def _join(existing: str | None, name: str) -> str:
    return f"{existing},{name}" if existing else name


def _texts(col: pd.Series) -> pd.Series:
    """`_text` over a column: vectorised where the driver gave integers, through a list
    otherwise (pandas' masks cost more than the work on a sync's ~20 rows)."""
    if col.dtype.kind in "iu":  # an integer key: never missing, never padded
        return col.astype(str).astype(object)
    if pd.api.types.is_string_dtype(col) and col.dtype != object:
        # str.strip over the list: ~60 ns a value, against ~90 for pandas' .str.strip()
        texts = [(v.strip() or None) if isinstance(v, str) else None for v in col.tolist()]
    else:  # a driver that mixes types in one column: value by value; `v != v` is how NaN
        # and NaT say they are missing
        texts = [None if missing(v) else _text(v) for v in col.tolist()]
    return pd.Series(_shared(texts), index=col.index, dtype=object)


def _shared(texts: list) -> list:
    """Equal texts as one object: a branch or item type repeated 100,000 times in a backfill
    chunk is then one string, not 100,000 (~60 bytes each, in the reader, in the pickle
    that carries the chunk, and in the backfill that unpickles it). ~30 ns a value."""
    if len(texts) < SHARED_FROM_ROWS:
        return texts
    seen: dict = {}
    return [seen.setdefault(t, t) for t in texts]


SHARED_FROM_ROWS = 1000  # below, a sync's small delta: nothing worth sharing


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
    absent = "" if required else None
    values, present = series.tolist(), series.notna().tolist()
    mapped = {b: view.branch_to_member(b)
              for b in {v for v, p in zip(values, present, strict=True) if p}}
    return pd.Series([mapped[v] if p else absent for v, p in zip(values, present, strict=True)],
                     index=series.index, dtype=object)


def _barcode_owner(df: pd.DataFrame, view: MemberView) -> pd.DataFrame:
    """Items: whose barcode prefix a barcode carries, whether the row is a consortium copy
    (a foreign book's local record), and whether the two agree with the item type."""
    barcodes = df["barcode"].tolist()
    found = (view.owners_of_barcodes(barcodes) if view.owners_of_barcodes is not None else
             [view.owner_of_barcode(b) if isinstance(b, str) else None for b in barcodes])
    owners = pd.Series(found, index=df.index, dtype=object)
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

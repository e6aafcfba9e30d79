"""The content hash of a source row: what tells a re-read row that changed from one that did
not (the merge skips a row whose hash the store already holds; reconcile compares them).

Computed over an explicit text serialization of the row, never a library's rendering of it:

* the fields are the entity's hashed columns, in the registry's order
  (`EntitySpec.hashed_columns`: by default every field but the key and the cursor, so a row
  re-read with a new timestamp but the same facts is no change);
* each value becomes one token:
  - missing (None, NaN, NaT, pandas' NA): ``\\N``;
  - a time: ISO 8601 in UTC to the microsecond, ``2026-11-20T09:30:15.123456Z`` (always six
    fraction digits; an aware time is converted to UTC, a naive one, which is what the ILS
    columns hold, is written as it is; anything finer than a microsecond is dropped);
  - a boolean: ``true`` or ``false``;
  - a number: a whole one as its decimal digits (``3``, also for ``3.0``: a column of counts
    with a gap arrives as floats), any other with six digits after the point (``2.500000``);
  - text: the text, with ``\\`` written ``\\\\`` and the separator U+001F written ``\\x1f``
    (so no text can read as the missing token or split a field);
* tokens are joined by U+001F (the unit separator);
* the hash is BLAKE2b with an 8-byte digest of that text in UTF-8, written as 16 lower-case
  hex digits (``hashlib.blake2b(text.encode(), digest_size=8).hexdigest()``).

A row's hash is its own: nothing in it depends on the other rows hashed with it. Hashes made
before this serialization (pandas' text of the columns, `domain.rowhash_legacy`) are marked
by Alembic revision 0002 and re-hashed where the row is next read (docs/row-hashes.md).
"""

from __future__ import annotations

from hashlib import blake2b

import numpy as np
import pandas as pd

from circhub.domain.records import spec

NULL = "\\N"
SEPARATOR = "\x1f"


def with_row_hash(entity: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with `_hash` added (a frame that has one already is returned as it is: a
    backfill hashes its chunks in its reader process)."""
    if "_hash" in frame:
        return frame
    if frame.empty:
        return frame.assign(_hash=pd.Series(dtype=object))
    return frame.assign(_hash=row_hashes(entity, frame))


def with_row_hashes(entity: str, frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Several frames, each with `_hash` added, hashed in one call: the same hashes as one by
    one (a row's hash is its own), without pandas' fixed cost per call, which is most of the
    hashing of a cycle's small frames."""
    todo = [i for i, f in enumerate(frames) if "_hash" not in f and not f.empty]
    if len(todo) < 2:
        return [with_row_hash(entity, f) for f in frames]
    columns = list(spec(entity).hashed_columns)
    hashes = row_hashes(entity, pd.concat([frames[i][columns] for i in todo],
                                           ignore_index=True))
    out = [f if i in todo else with_row_hash(entity, f) for i, f in enumerate(frames)]
    start = 0
    for i in todo:
        out[i] = frames[i].assign(_hash=hashes[start:start + len(frames[i])])
        start += len(frames[i])
    return out


def row_hashes(entity: str, frame: pd.DataFrame) -> list[str]:
    """Each row's hash, in order (see the module for the serialization)."""
    tokens = [tokens_of(frame[c]) for c in spec(entity).hashed_columns]
    digests = b"".join([blake2b(SEPARATOR.join(row).encode(), digest_size=8).digest()
                        for row in zip(*tokens, strict=True)])
    digits = digests.hex()  # one call for all rows: hexdigest() row by row costs ~15 %
    return [digits[i:i + 16] for i in range(0, len(digits), 16)]


def row_text(entity: str, row: dict) -> str:
    """One row's serialization (the text its hash is made of), from plain values."""
    return SEPARATOR.join(tokens_of(pd.Series([row.get(c)], dtype=object))[0]
                          for c in spec(entity).hashed_columns)


def tokens_of(col: pd.Series) -> list[str]:
    """A column's values as tokens, column-wise where its type allows."""
    kind = col.dtype.kind
    if kind == "M":
        return _times(col)
    if kind in "iu" and not col.hasnans:  # a nullable integer column's gaps go by value
        return col.astype(str).tolist()
    if kind == "f":
        return [_number(v) for v in col.tolist()]
    if kind == "b":
        return np.where(col.to_numpy(), "true", "false").tolist()
    if isinstance(col.dtype, pd.StringDtype) or _all_text(col):
        return _texts(col)
    return [_token(v) for v in col.tolist()]


def _all_text(col: pd.Series) -> bool:
    """An object column holding only text and gaps (what a driver hands over for VARCHAR): its
    tokens are the texts, found column-wise (value by value cost ~0.5 µs a value, four times
    what hashing the row costs)."""
    return col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) in (
        "string", "empty")


def _texts(col: pd.Series) -> list[str]:
    """A text column's tokens: escaped value by value only where some value needs it (one
    search of the joined column; escaping every value costs ~1 µs each)."""
    values = col.to_numpy(dtype=object, na_value=NULL)
    present = col.notna().to_numpy()
    if not _needs_escape("".join(values[present])):
        return values.tolist()
    return [_escaped(v) if p else NULL for v, p in zip(values.tolist(), present, strict=True)]


def _needs_escape(text: str) -> bool:
    return "\\" in text or SEPARATOR in text


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace(SEPARATOR, "\\x1f")


def _times(col: pd.Series) -> list[str]:
    if getattr(col.dtype, "tz", None) is not None:
        col = col.dt.tz_convert("UTC").dt.tz_localize(None)
    values = col.to_numpy().astype("datetime64[us]")
    text = np.datetime_as_string(values, unit="us", timezone="UTC")
    return np.where(np.isnat(values), NULL, text).tolist()


def _token(value) -> str:
    """One value of a column of mixed or object type."""
    if value is None or value is pd.NA or value is pd.NaT:
        return NULL
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return _number(value)
    if isinstance(value, pd.Timestamp | np.datetime64) or hasattr(value, "isoformat"):
        return _times(pd.Series(pd.to_datetime([value])))[0]
    return _escaped(str(value))


def _number(value: float) -> str:
    if value != value:  # NaN
        return NULL
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}"

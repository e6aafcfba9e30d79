"""Row hashes as they were made before Alembic revision 0002, kept only to recognise them.

Those hashes were 16 hex digits of pandas' `hash_pandas_object` over pandas' text of the hashed
columns (each time cut back to the width pandas writes it alone). Revision 0002 marks every
stored one with `LEGACY_MARK`; reconcile, meeting a marked hash, compares it with this function
and, where it matches, stores the row's new hash (`domain.rowhash`) instead of calling the row
changed. Frozen: never edit; delete once no store holds a marked hash
(`SELECT count(*) ... WHERE row_hash LIKE 'v1:%'` is 0 on every mirror table).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from circhub.domain.records import spec

LEGACY_MARK = "v1:"


def legacy_row_hashes(entity: str, frame: pd.DataFrame) -> list[str]:
    """Each row's hash as the code before revision 0002 made it."""
    columns = frame[list(spec(entity).hashed_columns)]
    text = pd.DataFrame({c: _times_as_text(columns[c]) if columns[c].dtype.kind == "M"
                         else columns[c].astype(str) for c in columns})
    return _hex16(pd.util.hash_pandas_object(text, index=False).to_numpy())


# The width of a time written alone, by the finest part of it that is not zero: the day, the
# second, the millisecond, the microsecond, the nanosecond.
_WIDTHS = (10, 19, 23, 26, 29)
_TICKS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _times_as_text(col: pd.Series) -> pd.Series:
    """A datetime column as text, each value as pandas writes it alone (see the module)."""
    text = col.astype(str)
    present = col.notna().to_numpy()
    if not present.any():
        return text
    per_second = _TICKS_PER_SECOND[np.datetime_data(col.dtype)[0]]
    ticks = col.to_numpy().view("i8")
    whole = [ticks % (86_400 * per_second) == 0, ticks % per_second == 0,
             ticks % max(per_second // 10**3, 1) == 0, ticks % max(per_second // 10**6, 1) == 0]
    width = np.select(whole, _WIDTHS[:4], _WIDTHS[4])
    short = present & (width < width[present].max())
    if not short.any():  # the usual column: nothing pandas widened
        return text
    text = text.copy()
    text[short] = [t[:w] for t, w in zip(text[short], width[short], strict=True)]
    return text


def _hex16(values: np.ndarray) -> list[str]:
    """Each uint64 as 16 lower-case hex digits (what format(v, "016x") gives), converted in
    one call: the big-endian bytes of the whole array as hex, cut every 16 digits."""
    digits = values.astype(">u8").tobytes().hex()
    return [digits[i:i + 16] for i in range(0, len(digits), 16)]

"""The content hash of a source row: what tells a re-read row that changed from one that did
not (the merge skips a row whose hash the store already holds).

Computed for a whole frame at once, over the business columns only: the cursor is left out,
so a row re-read with a new timestamp but the same facts is no change. The value must stay
what it has been (16 hex digits of pandas' hash of the columns as text): every stored row
carries one, and a new formula would make a whole store look changed once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HASHED = {
    "readers": ["reader_key", "card_masked", "branch", "birth_date", "sex", "registered_on",
                "id_status"],
    "items": ["barcode", "home_branch", "holding_branch", "on_loan_due", "last_seen", "item_type"],
    "loans": ["reader_local_id", "barcode", "branch", "issued_at", "due_at", "returned_at",
              "return_branch", "renewals"],
}


def with_row_hash(entity: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with `_hash` added (a frame that has one already is returned as it is: a
    backfill hashes its chunks in its reader process)."""
    if "_hash" in frame:
        return frame
    if frame.empty:
        return frame.assign(_hash=pd.Series(dtype=object))
    hashes = pd.util.hash_pandas_object(frame[HASHED[entity]].astype(str), index=False)
    return frame.assign(_hash=_hex16(hashes.to_numpy()))


def _hex16(values: np.ndarray) -> list[str]:
    """Each uint64 as 16 lower-case hex digits (what format(v, "016x") gives), converted in
    one call: the big-endian bytes of the whole array as hex, cut every 16 digits."""
    digits = values.astype(">u8").tobytes().hex()
    return [digits[i:i + 16] for i in range(0, len(digits), 16)]

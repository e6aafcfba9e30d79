"""A row's content hash is its own: the same whatever rows are hashed with it, and, for the
columns whose times pandas already wrote alike, the value the store's rows were hashed with."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from circhub.domain.records import spec
from circhub.domain.rowhash import _hex16, with_row_hash, with_row_hashes

TIMES = [datetime(2026, 3, 1), datetime(2026, 3, 1, 9, 30), datetime(2026, 3, 1, 9, 30, 5, 250000),
         datetime(2026, 3, 1, 9, 30, 5, 123456), None]


def _items(last_seen: list) -> pd.DataFrame:
    """Rows of one item, told apart only by when it was last seen."""
    n = len(last_seen)
    return pd.DataFrame({
        "local_id": "1", "barcode": "SC0010000001",
        "home_branch": "SC001", "holding_branch": "SC001",
        "on_loan_due": pd.Series([datetime(2026, 3, 15)] * n, dtype="datetime64[us]"),
        "last_seen": pd.Series(last_seen, dtype="datetime64[us]"), "item_type": "BK"})


def test_a_rows_hash_is_the_same_alone_and_beside_rows_of_other_times():
    together = with_row_hash("items", _items(TIMES))["_hash"].tolist()
    alone = [with_row_hash("items", _items([t]))["_hash"].iloc[0] for t in TIMES]
    assert together == alone
    assert len(set(alone)) == len(TIMES)  # and the times still tell the rows apart


def test_times_of_one_shape_hash_as_pandas_writes_them():
    """What every stored hash was made with: pandas' text of the columns, unchanged where
    the times of a column need the same width."""
    for times in ([TIMES[0], datetime(2026, 4, 2)], [TIMES[1], datetime(2026, 4, 2, 8)],
                  [TIMES[3], datetime(2026, 4, 2, 8, 0, 0, 1)]):
        frame = _items(times)
        hashed = frame[list(spec("items").hashed_columns)]
        before = _hex16(pd.util.hash_pandas_object(hashed.astype(str), index=False).to_numpy())
        assert with_row_hash("items", frame)["_hash"].tolist() == before


def test_members_hashed_together_get_the_hashes_they_get_one_by_one():
    frames = [_items(TIMES[:2]), _items([]), _items(TIMES[2:]), _items([TIMES[0]])]
    together = with_row_hashes("items", frames)
    for frame, hashed in zip(frames, together, strict=True):
        assert hashed["_hash"].tolist() == with_row_hash("items", frame)["_hash"].tolist()

"""A row's content hash is made of an explicit serialization (domain/rowhash.py,
docs/row-hashes.md): the documented tokens in the registry's field order, BLAKE2b of it; a
row's hash is its own, whatever rows are hashed with it or whatever dtype pandas gave them."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from hashlib import blake2b

import numpy as np
import pandas as pd

from circhub.domain.records import spec
from circhub.domain.rowhash import row_text, tokens_of, with_row_hash, with_row_hashes

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


def test_the_serialization_is_the_documented_one_and_the_hash_is_blake2b_of_it():
    row = {"barcode": "SC0010000001", "home_branch": "SC001", "holding_branch": "SC002",
           "on_loan_due": None, "last_seen": datetime(2026, 3, 1, 9, 30, 5, 250000),
           "item_type": "BK"}
    text = row_text("items", row)
    assert spec("items").hashed_columns == ("barcode", "home_branch", "holding_branch",
                                            "on_loan_due", "last_seen", "item_type")
    assert text == "\x1f".join(["SC0010000001", "SC001", "SC002", "\\N",
                                "2026-03-01T09:30:05.250000Z", "BK"])
    frame = pd.DataFrame([row]).astype({"on_loan_due": "datetime64[us]",
                                        "last_seen": "datetime64[us]"})
    assert with_row_hash("items", frame)["_hash"].iloc[0] == blake2b(
        text.encode(), digest_size=8).hexdigest()


def test_times_have_fixed_precision_in_utc_whatever_their_unit_or_zone():
    at = datetime(2026, 3, 1, 9, 30)
    for col in (pd.Series([at], dtype="datetime64[s]"), pd.Series([at], dtype="datetime64[ns]"),
                pd.Series([at.replace(tzinfo=timezone(timedelta(hours=8)))
                           + timedelta(hours=8)]),
                pd.Series([at], dtype=object)):
        assert tokens_of(col) == ["2026-03-01T09:30:00.000000Z"], col.dtype


def test_numbers_booleans_missing_values_and_escapes_have_one_token_each():
    assert tokens_of(pd.Series([1, 2])) == ["1", "2"]
    assert tokens_of(pd.Series([1.0, np.nan, 2.5])) == ["1", "\\N", "2.500000"]  # counts w/ gap
    assert tokens_of(pd.Series([1, None], dtype="Int64")) == ["1", "\\N"]
    assert tokens_of(pd.Series([True, False])) == ["true", "false"]
    assert tokens_of(pd.Series(["a\\N", "b\x1fc", None], dtype="str")) == [
        "a\\\\N", "b\\x1fc", "\\N"]
    assert tokens_of(pd.Series(["a\\N", 7, None], dtype=object)) == ["a\\\\N", "7", "\\N"]


def test_a_rows_hash_is_the_same_alone_and_beside_rows_of_other_times():
    together = with_row_hash("items", _items(TIMES))["_hash"].tolist()
    alone = [with_row_hash("items", _items([t]))["_hash"].iloc[0] for t in TIMES]
    assert together == alone
    assert len(set(alone)) == len(TIMES)  # and the times still tell the rows apart


def test_members_hashed_together_get_the_hashes_they_get_one_by_one():
    frames = [_items(TIMES[:2]), _items([]), _items(TIMES[2:]), _items([TIMES[0]])]
    together = with_row_hashes("items", frames)
    for frame, hashed in zip(frames, together, strict=True):
        assert hashed["_hash"].tolist() == with_row_hash("items", frame)["_hash"].tolist()


def test_a_text_column_gives_the_same_tokens_whatever_pandas_type_holds_it():
    values = ["a\\b", None, "x\x1fy", "", "plain", np.nan, pd.NA]
    as_objects = pd.Series(values, dtype=object)  # what a driver hands over for VARCHAR
    as_strings = pd.Series(values, dtype="string")
    one_by_one = [tokens_of(pd.Series([v], dtype=object))[0] for v in values]
    assert tokens_of(as_objects) == tokens_of(as_strings) == one_by_one
    assert one_by_one == ["a\\\\b", "\\N", "x\\x1fy", "", "plain", "\\N", "\\N"]
    mixed = pd.Series(["3", 3, None], dtype=object)  # not all text: value by value
    assert tokens_of(mixed) == ["3", "3", "\\N"]

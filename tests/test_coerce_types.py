"""`coerce_types` gives one shape whatever the driver handed over: texts stripped, blanks and
every kind of missing value as None (never NaN), integers as text, dates as microsecond
datetimes with NaT for what is no date, undecodable names blanked and named."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd

from circhub.domain.prepare import TEXT_PROBLEM, coerce_types

ITEM_COLUMNS = ["local_id", "barcode", "home_branch", "holding_branch", "on_loan_due",
                "last_seen", "item_type", "title", "updated_at"]


def _items(rows: list[tuple], **dtypes) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=ITEM_COLUMNS)
    return frame.astype(dtypes) if dtypes else frame


def test_every_missing_text_is_none_whatever_the_driver_gave():
    rows = [(7, " B1 ", "CPL", None, None, "2026-12-01 10:00:00", "  ", "Title", "2026-12-04"),
            ("8", float("nan"), "", "MPL", "0000-00-00", None, pd.NA, None, "2026-12-04")]
    for frame in (_items(rows), _items(rows, barcode=object, home_branch="str")):
        out = coerce_types("items", frame)
        assert out["local_id"].tolist() == ["7", "8"]
        assert out["barcode"].tolist() == ["B1", None]
        assert out["home_branch"].tolist() == ["CPL", None]
        assert out["holding_branch"].tolist() == [None, "MPL"]
        assert out["item_type"].tolist() == [None, None]
        assert out["title"].tolist() == ["Title", None]
        assert out[TEXT_PROBLEM].tolist() == [None, None]
        for column in ("on_loan_due", "last_seen", "updated_at"):
            assert str(out[column].dtype) == "datetime64[us]"
        assert out["last_seen"].iloc[0] == datetime(2026, 12, 1, 10)
        assert out["on_loan_due"].isna().all()  # no date, and '0000-00-00' is no date


def test_columns_the_source_lacks_come_as_none_and_bad_names_are_named():
    frame = pd.DataFrame({"local_id": [1, 2], "birth_date": [date(1990, 5, 6), "bad"],
                          "name": [b"caf\xc3\xa9", b"\xff\xfe\xfa"]})
    out = coerce_types("readers", frame)
    assert out["sex"].tolist() == [None, None]
    assert out["name"].tolist()[0] == "café"
    assert out[TEXT_PROBLEM].tolist() == [None, "name_encoding"]
    assert out["birth_date"].tolist()[0] == datetime(1990, 5, 6)
    assert pd.isna(out["birth_date"].iloc[1])


def test_an_integer_column_stays_whole_and_missing_counts_are_zero():
    frame = pd.DataFrame({"local_id": ["1", "2"], "renewals": [3, None]})
    out = coerce_types("loans", frame)
    assert out["renewals"].tolist() == [3, 0]
    assert str(out["renewals"].dtype) == "int64"


def test_times_with_a_zone_become_naive_local_times_typed_or_not():

    aware = datetime(2026, 12, 4, 2, 30, tzinfo=UTC)
    local = aware.astimezone().replace(tzinfo=None)
    for column in (pd.Series([aware, None]), pd.Series(pd.to_datetime([aware, None], utc=True)),
                   pd.Series([None, aware], dtype=object)[::-1].reset_index(drop=True)):
        frame = pd.DataFrame({"local_id": ["1", "2"], "updated_at": column})
        out = coerce_types("items", frame)
        assert str(out["updated_at"].dtype) == "datetime64[us]"
        assert out["updated_at"].iloc[0] == local and pd.isna(out["updated_at"].iloc[1])

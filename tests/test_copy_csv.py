"""A backfill's new rows go into the store as one CSV COPY written by Arrow
(`connections.bulk.csv_payload`): the rows that land are the ones the row-by-row COPY lands,
value for value, with what text can hold that CSV could misread (empty texts against NULLs,
quotes, commas, line breaks, backslashes, `\\N`, CJK), times to the microsecond and NaT,
flags, large integers; and a frame this path cannot write exactly goes row by row."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, Boolean, Column, DateTime, MetaData, String, Table, select

from circhub.connections.bulk import copy_frame, copy_frame_rows, csv_payload
from circhub.connections.engines import engine_for

TEXTS = ["plain", "", None, 'quote " and , comma', "line\nbreak\r\n", "back\\slash", "\\N",
         "欧阳娜娜", " padded ", "\x1f"]


def _table(name: str) -> Table:
    return Table(name, MetaData(), Column("key", BigInteger, primary_key=True),
                 Column("text", String(200)), Column("flag", Boolean),
                 Column("at", DateTime))


def _frame() -> pd.DataFrame:
    n = len(TEXTS)
    times = np.array(["2026-01-01T08:00:00.123456", "NaT", "1970-01-01", "9999-12-31T23:59:59",
                      "2026-02-28T23:59:59.999999"] * 2, dtype="datetime64[us]")
    return pd.DataFrame({"key": np.arange(n, dtype="int64") + 2**40,
                         "text": pd.Series(TEXTS, dtype=object),
                         "flag": np.array([True, False] * 5), "at": times})


def test_csv_copy_lands_the_rows_the_row_by_row_copy_lands(pg_db):
    engine = engine_for(pg_db())
    by_csv, by_rows = _table("by_csv"), _table("by_rows")
    frame = _frame()
    assert csv_payload(by_csv, frame) is not None  # this frame does take the CSV path
    with engine.begin() as conn:
        for table in (by_csv, by_rows):
            table.create(conn)
        copy_frame(conn, by_csv, frame)
        copy_frame_rows(conn, by_rows, frame)
        got = {t.name: conn.execute(select(t).order_by(t.c.key)).all() for t in (by_csv, by_rows)}
    assert got["by_csv"] == got["by_rows"]
    assert [r.text for r in got["by_csv"]] == TEXTS  # '' stays '', None stays NULL


def test_a_frame_csv_cannot_write_exactly_goes_row_by_row(pg_db):
    table = _table("mixed")
    frame = _frame().assign(text=[1, "two"] * 5)  # an int in a text column: PostgreSQL casts
    assert csv_payload(table, frame) is None
    assert csv_payload(table, _frame().assign(flag=[1, 0] * 5)) is None  # ints as flags
    engine = engine_for(pg_db())
    with engine.begin() as conn:
        table.create(conn)
        copy_frame(conn, table, frame)
        assert conn.execute(select(table.c.text).order_by(table.c.key)).scalars().all()[:2] \
            == ["1", "two"]

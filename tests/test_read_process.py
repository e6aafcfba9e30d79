"""The backfill's reader process: its chunks arrive typed and hashed, a member it cannot read
fails the backfill by name, it ends as soon as the backfill stops reading, and what it needs
(a database URL, the reader-ID key) never shows on its command line or in its environment."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine

from circhub.connections.config import Member
from circhub.simulator.koha import KohaDesk
from circhub.tasks.loads import read_process
from circhub.tasks.loads.read_process import ReaderDone, ReadJob, WindowRead, read_in_child
from circhub.tasks.sync.extract import SourceUnavailable
from tests.helpers import reader_processes, readers_gone_within

CODE = "SC001"
KEY = b"reader-id-key-of-this-test"
WHOLE = [(datetime(2020, 1, 1), datetime(2100, 1, 1))]  # every row, whenever stamped


def _member(url: str, n: int) -> Member:
    desk = KohaDesk(create_engine(url), CODE)
    desk.create_schema({CODE: "Sichuan Provincial Library"})
    desk.add_items([f"{CODE}{i:07d}" for i in range(1, n + 1)], datetime(2026, 1, 1))
    return Member(code=CODE, name="Sichuan Provincial Library", region="Chengdu",
                  profile="koha", connection=url)


def test_chunks_arrive_typed_and_hashed_then_the_window_then_the_end(tmp_path):
    member = _member(f"sqlite:///{tmp_path}/m.db", 250)
    got = list(read_in_child(ReadJob(member, member.connection, "items", WHOLE, 100, KEY)))

    frames = [g for g in got if isinstance(g, pd.DataFrame)]
    assert [len(f) for f in frames] == [100, 100, 50]
    assert got[3] == WindowRead(WHOLE[0][1]) and isinstance(got[4], ReaderDone)
    assert frames[0]["_hash"].str.fullmatch("[0-9a-f]{16}").all()
    assert frames[0]["last_seen"].dtype.kind == "M"  # typed, not the driver's strings


def test_a_reader_silent_too_long_is_stopped_and_the_member_reported_unavailable(
        mariadb_db, monkeypatch):
    """connectorx has no read timeout: a member that stops answering mid-read (here its items
    table locked by another session) must not hold the backfill and the member's slot."""
    monkeypatch.setattr(read_process, "SILENCE_SECONDS", 2)
    member = _member(mariadb_db(), 10)
    holder = create_engine(member.connection).connect()
    holder.exec_driver_sql("LOCK TABLES items WRITE")
    try:
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match="SC001: nothing came from its database "
                                                    "for 2 s") as raised:
            list(read_in_child(ReadJob(member, member.connection, "items", WHOLE, 100, KEY)))
        assert raised.value.transient and time.monotonic() - started < 30
        assert readers_gone_within(5)
    finally:
        holder.exec_driver_sql("UNLOCK TABLES")
        holder.close()


def test_a_member_it_cannot_read_fails_the_backfill_by_name(tmp_path):
    member = Member(code=CODE, name="x", region="Chengdu", profile="koha",
                    connection="mysql+pymysql://root@127.0.0.1:3306/circhub_no_such_db")
    with pytest.raises(SourceUnavailable, match="member SC001: backfill of items stopped"):
        list(read_in_child(ReadJob(member, member.connection, "items", WHOLE, 100, KEY)))
    assert readers_gone_within(5)


def test_the_reader_ends_when_the_backfill_stops_reading(tmp_path):
    member = _member(f"sqlite:///{tmp_path}/m.db", 3000)
    chunks = read_in_child(ReadJob(member, member.connection, "items", WHOLE, 100, KEY))
    next(chunks)
    assert reader_processes()  # still reading ahead
    chunks.close()
    assert readers_gone_within(5)


def test_no_url_or_key_on_the_readers_command_line_or_in_its_environment(tmp_path):
    member = _member(f"sqlite:///{tmp_path}/secret-member.db", 3000)
    chunks = read_in_child(ReadJob(member, member.connection, "items", WHOLE, 100, KEY))
    next(chunks)
    (pid,) = reader_processes()
    seen = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
    chunks.close()
    assert KEY not in seen and b"secret-member" not in seen


def test_a_mariadb_reader_that_leaves_times_as_text_types_them_as_the_sync_does(mariadb_db):
    """The reader asks pymysql for DATE, DATETIME and TIMESTAMP as text (backends:
    `bulk_read_args`) and types them in one pandas pass: the frames and row hashes must equal
    the sync path's, where pymysql parses each value, for every shape a Koha time takes."""
    from circhub.connections.engines import engine_for
    from circhub.domain.rowhash import with_row_hash
    from circhub.tasks.sync.extract import entity_query, prepare_frame, read_entity

    url = mariadb_db()
    member = _member(url, 6)
    with create_engine(url).begin() as conn:
        conn.exec_driver_sql("SET SESSION sql_mode = ''")  # a legacy server's zero dates
        conn.exec_driver_sql(
            "UPDATE items SET datelastseen = CASE itemnumber "
            "WHEN 1 THEN '0000-00-00 00:00:00' WHEN 2 THEN NULL "
            "WHEN 3 THEN '2026-02-29 08:00:00' WHEN 4 THEN '2026-03-01 23:59:59' "
            "ELSE datelastseen END, "
            "onloan = CASE itemnumber WHEN 4 THEN '9999-12-31' WHEN 5 THEN '2026-04-01' "
            "WHEN 6 THEN '0000-00-00' ELSE NULL END")

    bulk = [g for g in read_in_child(ReadJob(member, url, "items", WHOLE, 100, KEY))
            if isinstance(g, pd.DataFrame)]
    query = entity_query(member, "items", WHOLE[0][0], WHOLE[0][1])
    synced = with_row_hash("items", prepare_frame("items", read_entity(engine_for(url), query,
                                                                       "items"), KEY))
    engine_for.cache_clear()

    assert len(bulk) == 1
    pd.testing.assert_frame_equal(bulk[0], synced)
    shown = bulk[0].set_index("local_id")
    assert shown.loc["1", "last_seen"] is pd.NaT and shown.loc["3", "last_seen"] is pd.NaT
    assert shown.loc["4", "on_loan_due"] == pd.Timestamp("9999-12-31")

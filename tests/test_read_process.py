"""The backfill's reader process: its chunks arrive typed and hashed, a member it cannot read
fails the backfill by name, it ends as soon as the backfill stops reading, and what it needs
(a database URL, the reader-ID key) never shows on its command line or in its environment."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine

from circhub.connections.config import Member
from circhub.simulator.koha import KohaDesk
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

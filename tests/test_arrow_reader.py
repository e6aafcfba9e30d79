"""The backfill's Arrow reader (connectorx) and its driver path give the same central store,
row for row, hashes included: on Koha and OpenBiblio members on MariaDB, and Koha and
Evergreen members on PostgreSQL, every entity each maps, with what real member databases
hold: NULLs, Koha's zero dates, GBK names in latin1 columns, undecodable names, times with a
zone (Evergreen's timestamptz), text with backslashes and the hash's separator, and rows
that quarantine. A member connectorx cannot read is read through the driver, and says so."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pandas as pd
import pytest
from member_databases import make_runtime, member_database
from sqlalchemy import create_engine, select, text

from circhub.connections.arrow_read import ArrowReadFailed, arrow_backend, literal_sql
from circhub.connections.config import Member
from circhub.connections.holds import holding
from circhub.domain.schema import metadata
from circhub.simulator.koha import KohaDesk
from circhub.simulator.world import member_specs, mixed_world
from circhub.tasks.loads import reconcile
from circhub.tasks.loads.backfill import backfill_member
from circhub.tasks.loads.read_process import ReadJob, read_in_child
from circhub.tasks.loads.reconcile import compare_entity
from circhub.tasks.sync.extract import mapped_entities

KINDS = [("koha", "mariadb"), ("openbiblio", "mariadb"), ("koha", "postgresql"),
         ("evergreen", "postgresql")]
# Koha runs on MySQL/MariaDB only: its schema on PostgreSQL (the benchmark's PostgreSQL
# member) serves items, and its readers query compares text with an integer there.
ONLY = {2: ["items"]}
START = datetime(2026, 3, 1, 9, 0)
# Columns the hub stamps from its own clock when it writes a row: two backfills run at two
# moments, so these differ whatever the reader.
HUB_CLOCK = {"first_seen_at", "last_seen_at", "recorded_at", "created_at", "started_at",
             "finished_at", "resolved_at", "found_at", "next_attempt_at", "activated_at",
             "paused_at", "retired_at", "state_at"}
RUN_TABLES = {"backfills", "sync_runs", "alembic_version", "watermarks"}


@pytest.fixture
def members(request):
    """The four members after a few days of circulation, with the awkward rows added."""
    urls = [member_database(request, server) for _, server in KINDS]
    world = mixed_world([(kind, url) for (kind, _), url in zip(KINDS, urls, strict=True)],
                        seed=11, start=START)
    world.seed(readers_per_member=6, items_per_member=8, bad_readers=2)
    world.play(days=3, actions_per_day=12)
    codes = list(world.desks)
    _awkward_koha_rows(world.desks[codes[0]].engine, codes[0])
    _awkward_postgres_rows(world.desks[codes[2]].engine)
    return [{"code": code, "name": spec[1], "profile": kind, "connection": url,
             "constants": world.member_constants().get(code) or {}}
            for code, spec, (kind, _), url in zip(codes, member_specs(len(KINDS)), KINDS, urls,
                                                  strict=True)]


def _awkward_koha_rows(engine, code: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("SET SESSION sql_mode = ''"))  # what old Koha installs ran with
        conn.execute(text("ALTER TABLE borrowers MODIFY surname VARCHAR(200) "
                          "CHARACTER SET latin1"))
        conn.execute(text("UPDATE borrowers SET surname = UNHEX(:gbk) ORDER BY borrowernumber "
                          "LIMIT 1"), {"gbk": "欧阳".encode("gbk").hex()})
        conn.execute(text("UPDATE borrowers SET surname = UNHEX('FFFEFDFC'), firstname = NULL "
                          "ORDER BY borrowernumber DESC LIMIT 1"))
        conn.execute(text("UPDATE items SET datelastseen = '0000-00-00', "
                          "itemnotes_nonpublic = 'a\\\\b\x1fc' ORDER BY itemnumber LIMIT 2"))
        conn.execute(text("UPDATE items SET barcode = NULL, itype = NULL "
                          "ORDER BY itemnumber DESC LIMIT 1"))
        second_last = conn.execute(text("SELECT itemnumber FROM items ORDER BY itemnumber DESC "
                                        "LIMIT 1 OFFSET 1")).scalar()
        conn.execute(text("UPDATE items SET `timestamp` = :future WHERE itemnumber = :n"),
                     {"future": datetime.now() + timedelta(days=2), "n": second_last})


def _awkward_postgres_rows(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE items SET barcode = NULL, itype = NULL WHERE itemnumber = "
                          "(SELECT max(itemnumber) FROM items)"))
        conn.execute(text("UPDATE items SET itemnotes_nonpublic = E'back\\\\slash\\x1f' "
                          "WHERE itemnumber = (SELECT min(itemnumber) FROM items)"))


def _backfilled_store(pg_db, members: list[dict], reader: str) -> dict[str, list[tuple]]:
    return _store(_backfilled(pg_db, members, reader))


def _backfilled(pg_db, members: list[dict], reader: str):
    rt = make_runtime(pg_db(), members, bulk_reader=reader)
    for i, m in enumerate(rt.consortium.members):
        for entity in ONLY.get(i, mapped_entities(m)):
            with holding(m.code):
                backfill_member(rt, m, entity, START - timedelta(days=30),
                                datetime.now() + timedelta(days=30), timedelta(days=7),
                                chunk_rows=7)  # several chunks a window
    return rt


def _store(rt) -> dict[str, list[tuple]]:
    out = {}
    with rt.store.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in RUN_TABLES:
                continue
            columns = [c for c in table.c if c.name not in HUB_CLOCK and c.name != "id"]
            rows = conn.execute(select(*columns)).mappings().all()
            out[table.name] = sorted(tuple((k, repr(v)) for k, v in r.items()) for r in rows)
    return out


def test_the_arrow_reader_and_the_driver_give_the_same_central_store(members, pg_db, capfd):
    by_arrow = _backfilled_store(pg_db, members, "arrow")
    assert "through the driver" not in capfd.readouterr().err  # no member fell back
    by_driver = _backfilled_store(pg_db, members, "driver")
    assert by_arrow.keys() == by_driver.keys()
    for table, rows in by_driver.items():
        assert by_arrow[table] == rows, table
    # what was compared is the awkward data, not empty tables
    rules = {rule for row in by_arrow["quarantine"] for rule in eval(dict(row)["rules"])}
    assert {"barcode_present", "timestamp_not_in_future", "name_encoding",
            "id_check_digit"} <= rules
    zero_dates = [r for r in by_arrow["member_items"] if ("member", "'SC001'") in r
                  and ("last_seen", "None") in r]
    assert len(zero_dates) == 2
    assert by_arrow["loans"] and by_arrow["circulation_events"]


def test_reconcile_finds_the_same_drift_through_either_reader(members, pg_db, capfd,
                                                            monkeypatch):
    monkeypatch.setattr(reconcile, "ARROW", True)  # off in production until it has a watchdog
    rt = _backfilled(pg_db, members, "arrow")
    koha = create_engine(members[0]["connection"])
    with koha.begin() as conn:  # behind the watermark: what a poll cannot see
        conn.execute(text("UPDATE items SET itype = 'XX', `timestamp` = `timestamp` "
                          "ORDER BY itemnumber LIMIT 2"))
        conn.execute(text(
            "INSERT INTO items (biblionumber, biblioitemnumber, barcode, homebranch, "
            "holdingbranch, itype, `timestamp`) SELECT biblionumber, biblioitemnumber, "
            "'SC0019999999', homebranch, holdingbranch, itype, '2026-01-01' FROM items LIMIT 1"))
    by_driver = replace(rt, consortium=rt.consortium.model_copy(update={"bulk_reader": "driver"}))
    for i, member in enumerate(rt.consortium.members):
        for entity in ONLY.get(i, mapped_entities(member)):
            with holding(member.code):
                arrow, driver = (compare_entity(r, member, entity) for r in (rt, by_driver))
            assert (arrow.rows_checked, arrow.missing, arrow.changed, arrow.extra) == (
                driver.rows_checked, driver.missing, driver.changed, driver.extra)
            if driver.reload is not None:
                pd.testing.assert_frame_equal(arrow.reload, driver.reload)
    assert "through the driver" not in capfd.readouterr().err
    with holding(members[0]["code"]):
        drift = compare_entity(rt, rt.consortium.members[0], "items")
    assert len(drift.changed) == 2 and len(drift.missing) == 1


def test_a_column_connectorx_cannot_read_sends_the_member_through_the_driver(pg_db, capfd):
    """Evergreen's and Koha's columns are all readable; a member's own column of a type
    connectorx has no Arrow form for (xml here) must not stop its backfill."""
    url = pg_db()
    desk = KohaDesk(create_engine(url), "SC001")
    desk.create_schema({"SC001": "Sichuan Provincial Library"})
    desk.add_items([f"SC001{n:07d}" for n in range(1, 26)], START)
    with desk.engine.begin() as conn:
        conn.execute(text("ALTER TABLE items ALTER COLUMN itype TYPE xml "
                          "USING xmlparse(content itype)"))
    member = Member(code="SC001", name="Sichuan Provincial Library", region="Chengdu",
                    profile="koha", connection=url)
    # two windows: the rows are in the first, the second is read through the driver at once
    windows = [(datetime(2020, 1, 1), datetime(2060, 1, 1)),
               (datetime(2060, 1, 1), datetime(2100, 1, 1))]

    def frames(arrow: bool) -> list[pd.DataFrame]:
        job = ReadJob(member, url, "items", windows, 10, b"key", arrow=arrow)
        return [f for f in read_in_child(job) if isinstance(f, pd.DataFrame)]

    by_arrow = frames(arrow=True)
    said = capfd.readouterr().err
    assert "could not read items" in said and "through the driver" in said
    assert said.count("through the driver") == 1  # the second window went there directly
    by_driver = frames(arrow=False)
    assert [len(f) for f in by_arrow] == [10, 10, 5]
    for got, expected in zip(by_arrow, by_driver, strict=True):
        pd.testing.assert_frame_equal(got, expected)
    assert set(by_arrow[0]["item_type"]) == {"BK"}


def test_members_connectorx_cannot_reach_keep_the_driver():
    assert arrow_backend("postgresql+psycopg://h/db").arrow_scheme == "postgresql"
    assert arrow_backend("mysql+pymysql://h/db").arrow_scheme == "mysql"
    for url in ("sqlite:///m.db", "postgresql+pyodbc://h/db", "mssql+pyodbc://h/db"):
        assert arrow_backend(url) is None, url


def test_query_values_are_inlined_as_every_backend_reads_them():
    from sqlalchemy import column, table
    from sqlalchemy.dialects import mysql, postgresql

    from circhub.connections.sql import _bound

    items = table("items", column("barcode"), column("timestamp"), column("n"))
    query = select(items.c.barcode).where(items.c.barcode == _bound("O'Brien"),
                                          items.c.timestamp >= _bound(START),
                                          items.c.n.in_([_bound(1), _bound(True)]))
    for dialect in (mysql.dialect(), postgresql.dialect()):
        sql = literal_sql(query, dialect)
        assert "= 'O''Brien'" in sql and ">= '2026-03-01 09:00:00.000000'" in sql
        assert "IN (1, TRUE)" in sql
    with pytest.raises(ArrowReadFailed):  # the driver binds it instead
        literal_sql(select(items.c.n).where(items.c.barcode == _bound("a\\b")),
                    postgresql.dialect())

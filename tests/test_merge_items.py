"""Merging a member's items: the COPY path of a large batch (PostgreSQL) and the row path of a
sync's few rows leave the same mirror and catalog; new rows are copied, changed rows upserted,
unchanged rows left alone, and a key another transaction wrote first is not an error."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, select, text

from circhub.connections.bulk import copy_frame
from circhub.connections.config import load_config
from circhub.connections.migrations import upgrade
from circhub.domain.rowhash import with_row_hash
from circhub.domain.schema import items, member_items
from circhub.simulator.world import config_toml, member_specs
from circhub.tasks.sync.merge_items import _insert_new, merge_items

LARGE = 1500  # above circhub.connections.bulk.COPY_FROM_ROWS: the COPY path on PostgreSQL
SEEN = datetime(2026, 3, 1, 9, 30)


def _consortium(tmp_path: Path):
    specs = member_specs(2)
    urls = {code: f"sqlite:///{tmp_path}/{code}.db" for code, *_ in specs}
    path = tmp_path / "c.toml"
    path.write_text(config_toml(specs, urls, "sqlite:///unused.db", "merge items", demo=True))
    return load_config(path)


def _items(code: str, numbers: range, holding: str | None = None, item_type: str = "BK",
           prefix: str | None = None) -> pd.DataFrame:
    """Validated item rows as extraction gives them: own books at home unless told."""
    n = len(numbers)
    frame = pd.DataFrame({
        "local_id": [str(i) for i in numbers],
        "barcode": [f"{prefix or code}{i:07d}" for i in numbers],
        "home_branch": code, "holding_branch": holding or code,
        "on_loan_due": pd.Series([pd.NaT] * n, dtype="datetime64[us]"),
        "last_seen": pd.Series([SEEN] * n, dtype="datetime64[us]"),
        "item_type": item_type, "updated_at": pd.Series([SEEN] * n, dtype="datetime64[us]"),
        "is_copy": prefix is not None and prefix != code})
    return with_row_hash("items", frame)


def _store(engine):
    with engine.connect() as conn:
        mirror = conn.execute(select(member_items).order_by(member_items.c.member,
                                                            member_items.c.local_id)).all()
        catalog = conn.execute(select(items).order_by(items.c.barcode)).all()
    return mirror, catalog


def _merge(engine, consortium, code: str, frame: pd.DataFrame):
    with engine.begin() as conn:
        return merge_items(conn, consortium, consortium.member(code), frame)


def test_a_large_batch_of_new_items_is_copied_into_the_mirror_and_the_catalog(tmp_path, pg_db):
    consortium, engine = _consortium(tmp_path), create_engine(pg_db())
    upgrade(engine)
    here = _items("SC001", range(1, 1001))
    lent_out = _items("SC001", range(1001, LARGE + 1), holding="CQ001")
    written = _merge(engine, consortium, "SC001", pd.concat([here, lent_out]))

    mirror, catalog = _store(engine)
    assert len(written.changed) == len(mirror) == len(catalog) == LARGE
    statuses = {r.barcode: (r.owner, r.holder, r.status) for r in catalog}
    assert statuses["SC0010000001"] == ("SC001", "SC001", "home")
    assert statuses["SC0010001001"] == ("SC001", "CQ001", "away")
    # On this member's shelf in the catalog now: no sighting needs looking for.
    assert written.shelved_here == set(here["barcode"])


def test_a_large_batch_writes_new_and_changed_rows_and_leaves_unchanged_ones(tmp_path, pg_db):
    consortium, engine = _consortium(tmp_path), create_engine(pg_db())
    upgrade(engine)
    _merge(engine, consortium, "SC001", _items("SC001", range(1, 1201)))
    moved = _items("SC001", range(1, 101), holding="CQ001")  # 100 rows changed at the source
    again = pd.concat([moved, _items("SC001", range(101, 1201)),
                       _items("SC001", range(1201, 1301))])  # 1,100 unchanged, 100 new

    written = _merge(engine, consortium, "SC001", again)

    assert sorted(written.changed["local_id"], key=int) == [str(i) for i in range(1, 101)] + [
        str(i) for i in range(1201, 1301)]
    mirror, catalog = _store(engine)
    assert len(mirror) == len(catalog) == 1300
    holders = {r.local_id: r.holding_member for r in mirror}
    assert holders["1"] == "CQ001" and holders["101"] == "SC001"


@pytest.mark.parametrize("number", [7, 1400])  # among the keys looked up first, or past them
def test_a_book_already_catalogued_keeps_the_state_its_circulation_gave_it(tmp_path, pg_db,
                                                                           number):
    consortium, engine = _consortium(tmp_path), create_engine(pg_db())
    upgrade(engine)
    barcode = f"SC001{number:07d}"
    with engine.begin() as conn:  # a loan synced before the backfill catalogued one book
        conn.execute(items.insert().values(barcode=barcode, owner="SC001",
                                           holder="CQ001", status="on_loan", on_loan=True))
    written = _merge(engine, consortium, "SC001", _items("SC001", range(1, LARGE + 1)))

    _, catalog = _store(engine)
    book = next(r for r in catalog if r.barcode == barcode)
    assert (book.holder, book.status, book.on_loan) == ("CQ001", "on_loan", True)
    assert barcode not in written.shelved_here and len(catalog) == LARGE
    assert len(written.shelved_here) == LARGE - 1


def test_mirror_rows_stored_past_the_looked_up_keys_are_found_not_doubled(tmp_path, pg_db):
    consortium, engine = _consortium(tmp_path), create_engine(pg_db())
    upgrade(engine)
    _merge(engine, consortium, "SC001", _items("SC001", range(1201, 1301)))  # a sync, earlier
    batch = pd.concat([_items("SC001", range(1, 1201)),
                       _items("SC001", range(1201, 1251), holding="CQ001"),  # moved since
                       _items("SC001", range(1251, 1301))])  # as stored

    written = _merge(engine, consortium, "SC001", batch)

    assert len(written.changed) == 1250
    mirror, catalog = _store(engine)
    assert len(mirror) == len(catalog) == 1300
    assert {r.holding_member for r in mirror if 1201 <= int(r.local_id) <= 1250} == {"CQ001"}


def test_a_consortium_copy_catalogues_its_book_with_its_owner(tmp_path, pg_db):
    consortium, engine = _consortium(tmp_path), create_engine(pg_db())
    upgrade(engine)
    copies = _items("CQ001", range(1, LARGE + 1), item_type="CONSORT", prefix="SC001")
    _merge(engine, consortium, "CQ001", copies)

    mirror, catalog = _store(engine)
    assert {r.is_copy for r in mirror} == {True}
    assert {(r.owner, r.holder, r.status) for r in catalog} == {("SC001", "SC001", "home")}


def test_rows_another_transaction_inserted_first_are_left_alone_not_an_error(tmp_path, pg_db):
    engine = create_engine(pg_db())
    upgrade(engine)
    catalog = pd.DataFrame({"barcode": [f"SC001{i:07d}" for i in range(1, LARGE + 1)],
                            "owner": "SC001", "holder": "SC001", "status": "home",
                            "on_loan": False})
    with engine.begin() as conn:  # the other transaction's rows, with their own holder
        conn.execute(text("INSERT INTO items (barcode, owner, holder, status, on_loan) VALUES "
                          "('SC0010000500', 'SC001', 'CQ001', 'away', false)"))
    with engine.begin() as conn:
        inserted = _insert_new(conn, items, catalog, ("barcode",))

    assert len(inserted) == LARGE - 1 and "SC0010000500" not in set(inserted["barcode"])
    _, stored = _store(engine)
    assert len(stored) == LARGE
    assert next(r for r in stored if r.barcode == "SC0010000500").holder == "CQ001"


def test_a_mirror_row_another_transaction_wrote_first_is_updated_by_the_newer_read(pg_db):
    engine = create_engine(pg_db())
    upgrade(engine)
    with engine.begin() as conn:  # a sync of the same member, between look-up and COPY
        conn.execute(member_items.insert().values(
            member="SC001", local_id="500", barcode="SC0010000500", is_copy=False,
            holding_member="SC001", row_hash="as-the-sync-read-it"))
    rows = _items("SC001", range(1, LARGE + 1)).rename(columns={"_hash": "row_hash"})
    rows = pd.DataFrame({"member": "SC001", "local_id": rows["local_id"],
                         "barcode": rows["barcode"], "is_copy": False,
                         "holding_member": "CQ001", "row_hash": rows["row_hash"]})
    update = ["barcode", "is_copy", "holding_member", "row_hash"]
    with engine.begin() as conn:
        written = _insert_new(conn, member_items, rows, ("member", "local_id"), update,
                              "row_hash")

    assert len(written) == LARGE
    mirror, _ = _store(engine)
    assert len(mirror) == LARGE
    assert next(r for r in mirror if r.local_id == "500").holding_member == "CQ001"


@pytest.mark.parametrize("size", [20, LARGE])
def test_the_copy_path_and_the_row_path_leave_the_same_store(tmp_path, pg_db, size):
    consortium = _consortium(tmp_path)
    stores = {"postgresql": create_engine(pg_db()),
              "sqlite": create_engine(f"sqlite:///{tmp_path}/central.db")}
    first = pd.concat([_items("SC001", range(1, size + 1)),
                       _items("SC001", range(size + 1, size + 11), holding="CQ001")])
    second = pd.concat([_items("SC001", range(1, 6), holding="CQ001"),
                        _items("SC001", range(6, size + 21))])
    results = {}
    for name, engine in stores.items():
        upgrade(engine)
        changed = [sorted(_merge(engine, consortium, "SC001", f).changed["local_id"])
                   for f in (first, second)]
        results[name] = (changed, _store(engine))
    assert results["postgresql"] == results["sqlite"]


def test_timestamps_copied_in_binary_arrive_exactly_missing_ones_as_null(pg_db):
    engine = create_engine(pg_db())
    upgrade(engine)
    seen = [datetime(1999, 12, 31, 23, 59, 59, 999999), datetime(2000, 1, 1),
            datetime(2026, 11, 30, 8, 15, 42, 123456), None]
    frame = pd.DataFrame({"member": "SC001", "local_id": ["1", "2", "3", "4"],
                          "barcode": [f"SC00100000{i}" for i in range(1, 5)], "is_copy": False,
                          "holding_member": "SC001",
                          "on_loan_due": pd.Series(seen, dtype="datetime64[us]"),
                          "last_seen": pd.Series(seen[::-1], dtype="datetime64[us]"),
                          "row_hash": "h", "source_updated_at": None})
    with engine.begin() as conn:
        copy_frame(conn, member_items, frame)
    with engine.connect() as conn:
        got = conn.execute(select(member_items.c.on_loan_due, member_items.c.last_seen,
                                  member_items.c.source_updated_at)
                           .order_by(member_items.c.local_id)).all()
    assert [tuple(r) for r in got] == [(a, b, None) for a, b in zip(seen, seen[::-1],
                                                                   strict=True)]


def test_an_unchanged_row_read_beside_rows_of_other_times_is_left_alone(tmp_path, pg_db):
    """Seen at midnight, then re-read (a lookback) with a row seen at 09:30: pandas writes both
    times with seconds then, and the row must not look changed for it."""
    consortium, engine = _consortium(tmp_path), create_engine(pg_db())
    upgrade(engine)
    at_midnight = _items("SC001", range(1, 2)).drop(columns="_hash").assign(
        last_seen=pd.Series([datetime(2026, 3, 1)], dtype="datetime64[us]"))
    _merge(engine, consortium, "SC001", with_row_hash("items", at_midnight))
    both = pd.concat([at_midnight, _items("SC001", range(2, 3)).drop(columns="_hash")],
                     ignore_index=True)

    written = _merge(engine, consortium, "SC001", with_row_hash("items", both))

    assert list(written.changed["local_id"]) == ["2"]

"""Legacy encodings through a real sync: what the merge would store is clean UTF-8, and what
cannot be decoded is quarantined with the reason, never stored garbled.

Koha on MariaDB with readers' names in the two shapes old Chinese installs have: GBK bytes in
latin1 columns (the driver hands over mojibake), and GBK bytes in binary columns (the driver
hands over bytes). Polaris-style titles over ODBC: mojibake saved by a past migration.
"""

from __future__ import annotations

import random

import pytest
from member_databases import make_runtime, member_database
from sqlalchemy import select, text

from circhub.connections.engines import engine_for
from circhub.domain.schema import quarantine
from circhub.simulator.koha import KohaDesk
from circhub.simulator.polaris import PolarisDesk
from circhub.simulator.world import make_id_number
from circhub.tasks.sync.cycle import sync_member

HERE = "AA001"
UNDECODABLE = b"\xff\xfe\xfd\xfc"
NAME_COLUMNS = {
    "latin1": "VARCHAR(200) CHARACTER SET latin1",
    "binary": "VARBINARY(200)",
}


def runtime_for(pg_db, profile: str, url: str):
    return make_runtime(pg_db(), [{"code": HERE, "name": "Alpha", "profile": profile,
                                   "connection": url}])


def quarantined(rt) -> dict[str, list[str]]:
    with rt.store.connect() as conn:
        return {r.row_key: r.rules for r in conn.execute(
            select(quarantine.c.row_key, quarantine.c.rules).where(
                quarantine.c.released_at.is_(None)))}


@pytest.fixture(params=sorted(NAME_COLUMNS))
def koha(request, pg_db):
    url = member_database(request, "mariadb")
    engine = engine_for(url)
    KohaDesk(engine, HERE).create_schema({HERE: "Alpha"})
    with engine.begin() as conn:
        for col in ("surname", "firstname"):
            conn.execute(text(f"ALTER TABLE borrowers MODIFY {col} {NAME_COLUMNS[request.param]}"))
    return engine, runtime_for(pg_db, "koha", url)


def add_borrower(engine, surname: bytes, firstname: bytes) -> str:
    """The bytes an old GBK client wrote, stored as they came (UNHEX: no conversion)."""
    card = make_id_number(random.Random(surname + firstname), "Chengdu")[0]
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO borrowers (cardnumber, surname, firstname, branchcode, categorycode) "
            "VALUES (:card, UNHEX(:surname), UNHEX(:firstname), :branch, 'PT')"),
            {"card": card, "surname": surname.hex(), "firstname": firstname.hex(),
             "branch": HERE})
        return str(conn.execute(text("SELECT LAST_INSERT_ID()")).scalar())


def test_gbk_names_reach_the_merge_as_utf8_and_undecodable_ones_are_quarantined(koha):
    engine, rt = koha
    wang = add_borrower(engine, "王".encode("gbk"), "明".encode("gbk"))
    ouyang = add_borrower(engine, "欧阳".encode("gbk"), "娜娜".encode("gbk"))
    utf8 = add_borrower(engine, "李".encode(), "雷".encode())  # UTF-8 bytes in the same column
    broken = add_borrower(engine, UNDECODABLE, b"")
    result = sync_member(rt, rt.consortium.member(HERE))
    names = result.validated.good["readers"].set_index("local_id")["name"]
    names.index = names.index.astype(str)
    assert names.to_dict() == {wang: "王明", ouyang: "欧阳娜娜", utf8: "李雷"}
    assert quarantined(rt) == {broken: ["text_encoding", "name_encoding"]}


def test_a_repaired_name_is_quarantined_no_more_once_the_source_is_fixed(koha):
    engine, rt = koha
    broken = add_borrower(engine, UNDECODABLE, b"")
    sync_member(rt, rt.consortium.member(HERE))
    assert broken in quarantined(rt)
    with engine.begin() as conn:
        conn.execute(text("UPDATE borrowers SET surname = UNHEX(:s) WHERE borrowernumber = :n"),
                     {"s": "张".encode("gbk").hex(), "n": broken})
    result = sync_member(rt, rt.consortium.member(HERE))
    assert quarantined(rt) == {}
    assert list(result.validated.good["readers"]["name"]) == ["张"]


def test_mojibake_titles_read_over_odbc_are_repaired_and_garbled_ones_quarantined(
        request, pg_db):
    url = member_database(request, "odbc")
    engine = engine_for(url)
    desk = PolarisDesk(engine, HERE)
    desk.create_schema({HERE: "Alpha"})
    desk.add_items([f"{HERE}0000001", f"{HERE}0000002"], seen=None)
    mojibake = "三体".encode("gbk").decode("cp1252")  # what a latin1 round trip saved
    with engine.begin() as conn:
        for barcode, title in ((f"{HERE}0000001", mojibake), (f"{HERE}0000002", "三\ufffd")):
            conn.execute(text(
                'UPDATE "Polaris"."BibliographicRecords" SET "BrowseTitle" = :t '
                'WHERE "BibliographicRecordID" = (SELECT "AssociatedBibRecordID" '
                'FROM "Polaris"."CircItemRecords" WHERE "Barcode" = :b)'),
                {"t": title, "b": barcode})
    rt = runtime_for(pg_db, "polaris", url)
    result = sync_member(rt, rt.consortium.member(HERE))
    items = result.validated.good["items"]
    assert list(items["title"]) == ["三体"]
    assert list(quarantined(rt).values()) == [["text_encoding", "title_encoding"]]

"""Two members in one ILS instance: a city Evergreen hosting its main library (CD001) and a
district library (CD002), with the instance's own org unit codes CPL-MAIN and CPL-PIDU.

Declared in the config by `instance` and the instance's branch map; each member then extracts
the items it owns and the loans it made, and write-backs land in the one shared database.
Circulation between the siblings (MAIN's book lent at PIDU) is extracted correctly, but the
central replay still treats them as two shelves and holds such a loan as a conflict.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from member_databases import make_runtime, member_database
from sqlalchemy import select

from circhub.connections.config import ConfigError, parse_config
from circhub.connections.engines import engine_for
from circhub.connections.holds import holding
from circhub.domain.schema import loans, member_items, outbox
from circhub.simulator.evergreen import EvergreenDesk
from circhub.simulator.koha import KohaDesk
from circhub.simulator.world import make_id_number
from circhub.tasks.sync.cycle import sync_member
from circhub.tasks.writeback.push import push_member, targets_with_pending

MAIN, PIDU, KOHA = "CD001", "CD002", "SC001"
BRANCHES = {"CPL-MAIN": MAIN, "CPL-PIDU": PIDU}
T0 = datetime(2026, 10, 1, 9, 0)
BOOK = f"{MAIN}0000001"  # owned by the main library


@pytest.fixture
def city(request, pg_db):
    city_url = member_database(request, "postgresql")
    koha_url = member_database(request, "mariadb")
    main = EvergreenDesk(engine_for(city_url), "CPL-MAIN")
    pidu = EvergreenDesk(engine_for(city_url), "CPL-PIDU")
    koha = KohaDesk(engine_for(koha_url), KOHA)
    main.create_schema({"CPL-MAIN": "Chengdu Main", "CPL-PIDU": "Pidu", KOHA: "Sichuan"})
    koha.create_schema({KOHA: "Sichuan", MAIN: "Chengdu Main", PIDU: "Pidu"})
    main.add_items([BOOK, f"{MAIN}0000002"], T0)
    pidu.add_items([f"{PIDU}0000001"], T0)
    rng = random.Random(8)
    reader = main.add_readers([{"cardnumber": make_id_number(rng, "Chengdu")[0],
                                "surname": "Zhang", "firstname": "Wei", "dateofbirth": None,
                                "sex": "M", "dateenrolled": None}])[0]
    shared = {"profile": "evergreen", "connection": city_url, "instance": "CPL",
              "branches": BRANCHES}
    rt = make_runtime(pg_db(), [
        {"code": MAIN, "name": "Chengdu Main", **shared},
        {"code": PIDU, "name": "Pidu", **shared},
        {"code": KOHA, "name": "Sichuan", "profile": "koha", "connection": koha_url},
    ])
    return rt, main, pidu, koha, reader


def sync_all(rt) -> None:
    for member in rt.consortium.members:
        sync_member(rt, member)
    for target in targets_with_pending(rt.store):
        with holding(target):
            push_member(rt.store, rt.consortium, rt.consortium.member(target))


def rows(rt, table, *columns):
    with rt.store.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(select(*(table.c[c] for c in columns))))


def test_each_member_extracts_only_the_items_it_owns_and_the_loans_it_made(city):
    rt, main, pidu, _, reader = city
    pidu.checkout(BOOK, reader, T0 + timedelta(hours=1), T0 + timedelta(days=28))
    sync_all(rt)
    assert rows(rt, member_items, "member", "barcode") == [
        (MAIN, f"{MAIN}0000001"), (MAIN, f"{MAIN}0000002"), (PIDU, f"{PIDU}0000001")]
    assert rows(rt, loans, "member", "barcode") == [(PIDU, BOOK)]


def test_a_loan_at_a_sibling_branch_keeps_its_reader(city):
    rt, _, pidu, _, reader = city
    pidu.checkout(BOOK, reader, T0 + timedelta(hours=1), T0 + timedelta(days=28))
    sync_all(rt)
    assert rows(rt, loans, "member", "reader_key")[0][1] is not None  # accounts are shared


def test_returns_elsewhere_are_written_back_to_the_shared_database_for_each_member(city):
    rt, main, pidu, koha, reader = city
    own_books = {MAIN: (main, BOOK), PIDU: (pidu, f"{PIDU}0000001")}
    loans_at = {member: desk.checkout(book, reader, T0 + timedelta(hours=1),
                                      T0 + timedelta(days=28))
                for member, (desk, book) in own_books.items()}
    sync_all(rt)
    for _, book in own_books.values():
        koha.checkin(book, T0 + timedelta(days=3))
    sync_all(rt)
    for member, (desk, book) in own_books.items():
        assert desk.loan_view(loans_at[member]) == {
            "open": False, "returned_at": T0 + timedelta(days=3), "return_branch": KOHA,
            "records": 1}
        assert desk.item_view(book)["holding"] == KOHA
    assert rows(rt, outbox, "target", "kind", "status") == [
        (MAIN, "close_loan", "applied"), (PIDU, "close_loan", "applied")]


def test_a_member_of_an_instance_must_own_a_branch():
    with pytest.raises(ConfigError, match="list its own ILS branch codes"):
        parse_config({"members": [{"code": MAIN, "name": "M", "profile": "evergreen",
                                   "connection": "sqlite://", "instance": "CPL",
                                   "branches": {"CPL-PIDU": PIDU}}]})


def test_a_branch_claimed_by_two_members_of_an_instance_is_refused():
    both = {"profile": "evergreen", "connection": "sqlite://", "instance": "CPL"}
    with pytest.raises(ConfigError, match="branch 'CPL-MAIN' is claimed by CD001 too"):
        parse_config({"members": [
            {"code": MAIN, "name": "M", "branches": {"CPL-MAIN": MAIN}, **both},
            {"code": PIDU, "name": "P", "branches": {"CPL-MAIN": PIDU}, **both}]})


def test_a_member_outside_any_instance_reads_all_rows():
    consortium = parse_config({"members": [{"code": MAIN, "name": "M", "profile": "koha",
                                            "connection": "sqlite://",
                                            "branches": {"CPL-MAIN": MAIN}}]})
    assert consortium.member(MAIN).own_branches() is None

"""A book crosses between ILS kinds and the owner's own database shows where it went.

One consortium of four kinds: an Evergreen member (PostgreSQL), a Koha member (MariaDB), a
Polaris-style member (PostgreSQL through pyodbc) and an OpenBiblio member (MariaDB), the kind
added as a profile alone. The stages run as a sync cycle does: every
member's extract-validate-merge, then the push of every pending outbox command.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from helpers import sync_cycle
from member_databases import member_database
from sqlalchemy import text

from circhub.connections.config import load_config
from circhub.connections.engines import central_url, engine_for
from circhub.connections.runtime import upgrade_store
from circhub.simulator.polaris import STAND_IN
from circhub.simulator.world import LOAN_DAYS, config_toml, member_specs, mixed_world

KINDS = [("evergreen", "postgresql"), ("koha", "mariadb"), ("polaris", "odbc"),
         ("openbiblio", "mariadb")]
EVERGREEN, KOHA, POLARIS, OPENBIBLIO = (spec[0] for spec in member_specs(len(KINDS)))


@pytest.fixture
def consortium(request, pg_db, tmp_path):
    urls = [member_database(request, server) for _, server in KINDS]
    start = datetime.now().replace(microsecond=0) - timedelta(days=20)
    world = mixed_world([(kind, url) for (kind, _), url in zip(KINDS, urls, strict=True)],
                        seed=4, start=start)
    world.seed(readers_per_member=3, items_per_member=3)
    codes = list(world.desks)
    config = tmp_path / "consortium.toml"
    config.write_text(config_toml(member_specs(len(KINDS)), dict(zip(codes, urls, strict=True)),
                                  pg_db(), "mixed", demo=True,
                                  profiles={c: k for c, (k, _) in zip(codes, KINDS, strict=True)},
                                  constants=world.member_constants()))
    upgrade_store(config)
    return world, config


def local_reader(world, member: str):
    return next(p for p in world.people if p.home == member)


def lend_then_return(world, config, book: str, lender: str, returned_at: str) -> int:
    """Lent at `lender` (and synced), returned at another member (and synced): the loan id."""
    world.checkout(book, lender, local_reader(world, lender))
    loan_id = world.books[book].loan[1]
    sync_cycle(config)
    world.checkin(book, returned_at)
    sync_cycle(config)
    return loan_id


def evergreen_sql(world, sql: str, **params):
    with world.desks[EVERGREEN].engine.connect() as conn:
        return conn.execute(text(sql), params).one()


def test_an_evergreen_book_returned_at_a_koha_member_is_closed_in_evergreen(consortium):
    world, config = consortium
    book = f"{EVERGREEN}0000001"
    circ_id = lend_then_return(world, config, book, EVERGREEN, KOHA)
    koha_org = evergreen_sql(world, "SELECT id FROM actor.org_unit WHERE shortname = :s",
                             s=KOHA).id
    circ = evergreen_sql(world, "SELECT checkin_time, checkin_lib, stop_fines, stop_fines_time, "
                                "xact_finish, checkin_staff FROM action.circulation "
                                "WHERE id = :id", id=circ_id)
    assert circ.checkin_time is not None
    assert circ.checkin_lib == koha_org
    # closed as Evergreen's check-in closes a transaction (out of the billing views)
    assert circ.stop_fines == "CHECKIN" and circ.stop_fines_time == circ.checkin_time
    assert circ.xact_finish is not None and circ.checkin_staff is not None
    # The copy keeps its home (circ_lib) and shows checked out to the consortium stand-in at
    # the Koha member's org unit (the faithful schema: the old test expected circ_lib moved).
    copy = evergreen_sql(world, "SELECT acp.circ_lib, acp.status, circ.circ_lib AS out_at, "
                                "au.usrname FROM asset.copy acp JOIN action.circulation circ "
                                "ON circ.target_copy = acp.id AND circ.checkin_time IS NULL "
                                "JOIN actor.usr au ON au.id = circ.usr WHERE acp.barcode = :b",
                         b=book)
    own_org = evergreen_sql(world, "SELECT id FROM actor.org_unit WHERE shortname = :s",
                            s=EVERGREEN).id
    assert (copy.circ_lib, copy.status, copy.out_at) == (own_org, 1, koha_org)
    assert copy.usrname == "circhub-consortium"
    # Evergreen's profile maps no renewal count: the central store invents none.
    with engine_for(central_url(load_config(config))).connect() as conn:
        renewals = conn.execute(text("SELECT renewals FROM loans WHERE member = :m AND "
                                     "local_id = :i"), {"m": EVERGREEN, "i": str(circ_id)})
        assert renewals.scalar_one() == 0


def test_the_return_time_written_to_evergreen_is_when_the_koha_desk_took_the_book(consortium):
    world, config = consortium
    book = f"{EVERGREEN}0000002"
    world.checkout(book, EVERGREEN, local_reader(world, EVERGREEN))
    circ_id = world.books[book].loan[1]
    world.checkin(book, KOHA)
    returned_at = world.journal[-1][0]
    sync_cycle(config)
    sync_cycle(config)
    assert world.desks[EVERGREEN].loan_view(circ_id) == {
        "open": False, "returned_at": returned_at, "return_branch": KOHA, "records": 1}


def test_a_polaris_book_returned_at_evergreen_and_lent_there_again_shows_in_polaris(
        consortium):
    world, config = consortium
    book = f"{POLARIS}0000001"
    loan_id = lend_then_return(world, config, book, POLARIS, EVERGREEN)
    polaris = world.desks[POLARIS]
    assert polaris.loan_view(loan_id)["return_branch"] == EVERGREEN
    assert polaris.item_view(book)["holding"] == EVERGREEN

    world.checkout(book, EVERGREEN, local_reader(world, EVERGREEN))  # secondary circulation
    lent_at = world.journal[-1][0]
    sync_cycle(config)
    # Out (2), checked out to the consortium stand-in (no reader's loan opened), due the day
    # the Evergreen desk set.
    view = polaris.item_view(book)
    assert (view["holding"], view["status"], view["open_loan"]) == (EVERGREEN, 2, None)
    assert view["onloan"] == (lent_at + timedelta(days=LOAN_DAYS)).date()
    assert polaris.lent_to(book) == STAND_IN

    world.checkin(book, POLARIS)  # home at its owner's desk: the stand-in's checkout ends
    sync_cycle(config)
    view = polaris.item_view(book)
    assert (view["holding"], view["status"], view["onloan"]) == (POLARIS, 1, None)
    assert polaris.lent_to(book) is None


def test_once_the_owner_has_applied_the_return_later_cycles_owe_nothing(consortium):
    world, config = consortium
    lend_then_return(world, config, f"{EVERGREEN}0000003", EVERGREEN, KOHA)
    rt = sync_cycle(config)
    before = outbox_rows(rt)
    assert ("close_loan", EVERGREEN, "applied") in before
    rt = sync_cycle(config)
    assert outbox_rows(rt) == before


@pytest.mark.parametrize("owner", [EVERGREEN, POLARIS])
def test_a_book_lent_again_elsewhere_is_told_to_its_owner_once(consortium, owner):
    """Evergreen and Polaris keep no due date on an item lent at another member: the owner's
    next extract never shows the one the hub sent, and the hub must not send it again."""
    world, config = consortium
    book = f"{owner}0000002"
    world.checkout(book, owner, local_reader(world, owner))
    sync_cycle(config)
    world.checkin(book, KOHA)  # returned and lent again between two syncs: one close_loan
    world.checkout(book, KOHA, local_reader(world, KOHA))  # tells the return and the new loan
    rt = sync_cycle(config)
    before = outbox_rows(rt)
    assert before.count(("close_loan", owner, "applied")) == 1
    for _ in range(2):
        rt = sync_cycle(config)
        assert outbox_rows(rt) == before


def test_an_openbiblio_book_returned_at_a_koha_member_lands_back_in_openbiblio(consortium):
    world, config = consortium
    book = f"{OPENBIBLIO}0000001"
    loan_id = lend_then_return(world, config, book, OPENBIBLIO, KOHA)
    returned_at = next(at for at, action, barcode, _ in reversed(world.journal)
                       if action == "returned" and barcode == book)
    sync_cycle(config)
    owner = world.desks[OPENBIBLIO]
    # OpenBiblio's own tables: the booking returned at the Koha desk's whole second, the
    # copy's status pointer on a new 'in' history row, the copy at the Koha member's site.
    assert owner.loan_view(loan_id) == {"open": False,
                                        "returned_at": returned_at.replace(microsecond=0)}
    assert owner.item_view(book) == {"holding": KOHA, "status": "in", "onloan": None,
                                     "open_loan": None}


def test_an_openbiblio_book_lent_again_at_koha_is_on_loan_there_in_openbiblio(consortium):
    world, config = consortium
    book = f"{OPENBIBLIO}0000002"
    lend_then_return(world, config, book, OPENBIBLIO, KOHA)
    world.checkout(book, KOHA, local_reader(world, KOHA))  # secondary circulation
    lent_at = world.journal[-1][0]
    sync_cycle(config)
    # On loan to the consortium (OpenBiblio's 'ln'), due the day the Koha desk set.
    view = world.desks[OPENBIBLIO].item_view(book)
    assert (view["holding"], view["status"]) == (KOHA, "ln")
    assert view["onloan"] == (lent_at + timedelta(days=LOAN_DAYS)).date()


def outbox_rows(rt) -> list[tuple]:
    with rt.store.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(text(
            "SELECT kind, target, status FROM outbox")))

"""Write-backs into a Polaris-style member (PostgreSQL through pyodbc): a holder asked to send a
Koha member's book home transfers it and receives the arrival, and the item's version guard
(CheckInDate) keeps a stale command from undoing the owner's own check-in."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from member_databases import member_database

from circhub.connections.profile import load_profile
from circhub.connections.runtime import upgrade_store
from circhub.simulator.world import config_toml, member_specs, mixed_world
from circhub.tasks.circulation.transfers import request_transfer
from circhub.tasks.writeback.push import apply_command
from tests.writeback import commands, dispose, ils, push, reader, sync


@pytest.fixture
def koha_and_polaris(request, tmp_path, pg_db):
    urls = [member_database(request, "mariadb"), member_database(request, "odbc")]
    start = datetime.now().replace(microsecond=0) - timedelta(days=20)
    world = mixed_world(list(zip(("koha", "polaris"), urls, strict=True)), seed=6, start=start)
    world.seed(readers_per_member=2, items_per_member=2)
    codes = list(world.desks)
    config = tmp_path / "consortium.toml"
    config.write_text(config_toml(member_specs(2), dict(zip(codes, urls, strict=True)), pg_db(),
                                  "mixed", demo=True,
                                  profiles={codes[0]: "koha", codes[1]: "polaris"}))
    upgrade_store(config)  # `circhub db upgrade`
    yield world, config, codes
    dispose(world, config)


def lent_home_returned_away(world, config, owner: str, away: str, book: str):
    world.checkout(book, owner, reader(world, owner))
    push(sync(config))
    world.checkin(book, away)
    rt = sync(config)
    push(rt)
    return rt


def test_a_polaris_holder_sends_the_book_home_and_receives_the_arrival(koha_and_polaris):
    world, config, (koha, polaris) = koha_and_polaris
    book = f"{koha}0000001"
    rt = lent_home_returned_away(world, config, koha, polaris, book)

    request_transfer(rt.store, rt.consortium, book, at=world.tick())
    push(rt)
    push(rt)  # a replay sends nothing twice
    [transit] = ils(world, polaris,
                    'SELECT t."ReceivedDate", src."Abbreviation" AS source, '
                    'dest."Abbreviation" AS dest, i."ItemStatusID" AS status '
                    'FROM "Polaris"."ItemTransits" t '
                    'JOIN "Polaris"."CircItemRecords" i ON i."ItemRecordID" = t."ItemRecordID" '
                    'JOIN "Polaris"."Organizations" src '
                    'ON src."OrganizationID" = t."FromOrganizationID" '
                    'JOIN "Polaris"."Organizations" dest '
                    'ON dest."OrganizationID" = t."ToOrganizationID"')
    assert (transit.source, transit.dest, transit.status) == (polaris, koha, 6)
    assert transit.ReceivedDate is None

    world.checkin(book, koha)  # the owner's desk has it back
    rt = sync(config)
    push(rt)
    [arrived] = commands(rt, book, target=polaris, kind="transfer_arrived")
    assert arrived.status == "applied"
    [received] = ils(world, polaris, 'SELECT "ReceivedDate" FROM "Polaris"."ItemTransits"')
    assert received.ReceivedDate is not None


def test_a_stale_command_never_undoes_the_polaris_owners_own_check_in(koha_and_polaris):
    world, config, (koha, polaris) = koha_and_polaris
    book = f"{polaris}0000001"
    rt = lent_home_returned_away(world, config, polaris, koha, book)
    stale = world.clock
    world.checkin(book, polaris)  # back home at its owner's desk

    payload = {"barcode": book, "holder": koha, "due_at": None,
               "state_at": stale.isoformat(sep=" ")}
    apply_command(world.desks[polaris].engine, load_profile("polaris"),
                  rt.consortium.member(polaris), "set_item", payload)

    view = world.desks[polaris].item_view(book)
    assert (view["holding"], view["status"]) == (polaris, 1)

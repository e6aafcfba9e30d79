"""Write-back in the profile language: the version guard, kinds a profile may leave out, a push
to a member whose profile has no steps for a kind, and an Evergreen holder asked to send a Koha
member's book home (real PostgreSQL and MariaDB)."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta

import pytest
from sqlalchemy.dialects import mysql

from circhub.connections.profile import PROFILE_DIR, ProfileError, load_profile, parse_profile
from circhub.connections.runtime import upgrade_store
from circhub.connections.sql import step_statement
from circhub.simulator.world import config_toml, member_specs, mixed_world
from circhub.tasks.circulation.transfers import request_transfer
from circhub.tasks.writeback import push as push_module
from tests.writeback import commands, dispose, ils, push, sync

KOHA_TOML = tomllib.loads((PROFILE_DIR / "koha.toml").read_text())


def _koha_with(**writeback) -> dict:
    return {**KOHA_TOML, "writeback": {**KOHA_TOML["writeback"], **writeback}}


def test_the_koha_item_update_leaves_an_item_that_shows_newer_state_alone():
    step = load_profile("koha").writeback["set_item"][0]
    sql = str(step_statement(step, {"barcode": "X1", "holder_branch": "B", "due_at": None,
                                    "state_at": datetime(2026, 11, 1, 9)})
              .compile(dialect=mysql.dialect()))
    assert "(items.datelastseen IS NULL OR items.datelastseen <= %s)" in sql
    assert "datelastseen=%s" in sql  # the command's state time becomes the item's version


def test_a_profile_may_leave_out_the_optional_kinds():
    data = {**KOHA_TOML, "writeback": {k: v for k, v in KOHA_TOML["writeback"].items()
                                       if k in ("close_loan", "set_item")}}
    assert sorted(parse_profile("lean", data).writeback) == ["close_loan", "set_item"]


def test_an_unknown_write_back_kind_is_refused():
    with pytest.raises(ProfileError,
                       match=r"unknown key 'writeback.send_home' \(known: close_loan,"):
        parse_profile("typo", _koha_with(send_home=KOHA_TOML["writeback"]["transfer"]))


def test_a_version_guard_on_anything_but_an_update_is_refused():
    step = {**KOHA_TOML["writeback"]["transfer"][0], "unless_newer": {"datesent": ":state_at"}}
    with pytest.raises(ProfileError, match="'unless_newer' guards an update step only"):
        parse_profile("odd", _koha_with(transfer=[step]))


@pytest.fixture
def koha_and_evergreen(request, tmp_path, mariadb_db, pg_db):
    urls = [mariadb_db(), pg_db()]
    start = datetime.now().replace(microsecond=0) - timedelta(days=20)
    world = mixed_world(list(zip(("koha", "evergreen"), urls, strict=True)), seed=4,
                        start=start)
    world.seed(readers_per_member=2, items_per_member=2)
    codes = list(world.desks)
    config = tmp_path / "consortium.toml"
    config.write_text(config_toml(member_specs(2), dict(zip(codes, urls, strict=True)), pg_db(),
                                  "mixed", demo=True,
                                  profiles={codes[0]: "koha", codes[1]: "evergreen"}))
    upgrade_store(config)
    yield world, config, codes
    dispose(world, config)


def test_a_kind_the_holders_profile_lacks_is_marked_unsupported_by_name(koha_and_evergreen,
                                                                      monkeypatch):
    world, config, (koha, evergreen) = koha_and_evergreen
    lean = load_profile("evergreen")
    lean = lean.model_copy(update={"writeback": {k: v for k, v in lean.writeback.items()
                                                 if k in ("close_loan", "set_item")}})
    monkeypatch.setattr(push_module, "load_profile",
                        lambda kind: lean if kind == "evergreen" else load_profile(kind))
    book = _returned_at_evergreen(world, koha, evergreen)
    rt = sync(config)
    push(rt)

    asked = world.tick()
    request_transfer(rt.store, rt.consortium, book, at=asked)
    # and, queued after it, a return Evergreen's profile does support
    own = f"{evergreen}0000001"
    world.checkout(own, evergreen, next(p for p in world.people if p.home == evergreen))
    sync(config)
    world.checkin(own, koha)
    rt = sync(config)
    report = push(rt)[evergreen]

    [cmd] = commands(rt, book, target=evergreen, kind="transfer")
    assert cmd.status == "unsupported"
    assert cmd.outcome == (f"write-back 'transfer' not supported by profile 'evergreen' "
                           f"(member {evergreen})")
    assert report.unsupported == 1 and report.applied == 1  # the return still went through
    assert [c.status for c in commands(rt, own, target=evergreen)] == ["applied"]
    # asked again, the same transfer stays unsupported: only a superseded command is revived
    assert request_transfer(rt.store, rt.consortium, book, at=asked).commands == 0
    assert [c.status for c in commands(rt, book, target=evergreen, kind="transfer")] == \
        ["unsupported"]


def _returned_at_evergreen(world, koha: str, evergreen: str) -> str:
    book = f"{koha}0000001"
    world.checkout(book, koha, next(p for p in world.people if p.home == koha))
    world.checkin(book, evergreen)
    return book


def test_an_evergreen_holder_sends_the_book_home_in_transit_and_receives_the_arrival(
        koha_and_evergreen):
    world, config, (koha, evergreen) = koha_and_evergreen
    book = _returned_at_evergreen(world, koha, evergreen)
    rt = sync(config)
    push(rt)

    request_transfer(rt.store, rt.consortium, book, at=world.tick())
    push(rt)
    [transit] = ils(world, evergreen,
                    "SELECT t.dest_recv_time, dest.shortname AS dest, src.shortname AS source, "
                    "t.copy_status, acp.status FROM action.transit_copy t "
                    "JOIN asset.copy acp ON acp.id = t.target_copy "
                    "JOIN actor.org_unit dest ON dest.id = t.dest "
                    "JOIN actor.org_unit src ON src.id = t.source WHERE acp.barcode = :b", b=book)
    assert (transit.source, transit.dest, transit.status) == (evergreen, koha, 6)
    assert transit.copy_status == 7 and transit.dest_recv_time is None
    push(rt)  # a replay sends nothing twice
    assert len(ils(world, evergreen, "SELECT id FROM action.transit_copy")) == 1

    world.checkin(book, koha)  # the owner's desk has it back
    rt = sync(config)
    push(rt)
    [arrived] = commands(rt, book, target=evergreen, kind="transfer_arrived")
    assert arrived.status == "applied"
    [received] = ils(world, evergreen, "SELECT dest_recv_time FROM action.transit_copy")
    assert received.dest_recv_time is not None

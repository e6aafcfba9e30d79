"""A Koha member's choice of ONE consortium branch for every other member (issue 15 item 2,
`holder_branches = "one"`), on the faithful MariaDB Koha of both generations: a book away
shows holdingbranch CONSORT with the holder in the staff note items.itemnotes_nonpublic, the
central store keeps the true holder, `check` / `prepare` ask for that one branch only, and a
transfer home names the owner."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from circhub.connections.config import ConfigError, load_config, parse_config
from circhub.connections.holds import holding
from circhub.connections.runtime import open_runtime
from circhub.domain.schema import items
from circhub.tasks.circulation.transfers import request_transfer
from circhub.tasks.onboarding.check import check_member
from circhub.tasks.onboarding.prepare import prepare_member
from tests.test_onboarding_prepare import as_real_koha
from tests.writeback import BOOK, A, B, C, commands, item_row, push, reader, sync

CONSORT = "CONSORT"
pytestmark = pytest.mark.usefixtures("prefect_server")


def one_branch_at(config, member: str) -> None:
    """The member chooses one consortium branch (its table in the config file)."""
    config.write_text(config.read_text().replace(
        f'code = "{member}"\n', f'code = "{member}"\nholder_branches = "one"\n', 1))
    open_runtime.cache_clear()


def prepared_one_branch(world, config) -> None:
    """A's Koha as a real one: only its own branch; then A chooses one branch and prepares."""
    as_real_koha(world, A)
    one_branch_at(config, A)
    consortium = load_config(config)
    prepare_member(consortium, consortium.member(A), world.desks[A].engine)


def ils(world, member: str, sql: str, **params):
    with world.desks[member].engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def central_holder(rt, barcode: str) -> str:
    with rt.store.connect() as conn:
        return conn.execute(select(items.c.holder).where(items.c.barcode == barcode)).scalar()


def _cycle(config):
    rt = sync(config)
    return rt, push(rt)


def test_the_choice_is_validated_naming_member_field_and_value():
    base = {"members": [{"code": "AA001", "name": "A", "profile": "koha",
                         "connection": "sqlite://", "holder_branches": "many"}]}
    with pytest.raises(ConfigError, match=r"member AA001:.*holder_branches.*many"):
        parse_config(base)
    base["members"][0].update(profile="evergreen", holder_branches="one")
    with pytest.raises(ConfigError, match=r"member AA001:.*holder_branches.*'one' is not "
                                          r"offered by profile 'evergreen'"):
        parse_config(base)


def test_check_asks_for_the_one_branch_only_and_is_ready_after_prepare(koha):
    world, config = koha
    as_real_koha(world, A)
    one_branch_at(config, A)
    world.checkout(BOOK, A, reader(world, A))  # an open loan to rehearse close_loan on
    consortium = load_config(config)

    with holding(A):
        before = check_member(consortium, A)
    assert not before.ready
    assert before.missing == [f"consortium branch {CONSORT} (every other member)"]

    created = prepare_member(consortium, consortium.member(A), world.desks[A].engine)

    assert created.created == [f"consortium branch {CONSORT} (every other member)"]
    assert ils(world, A, "SELECT branchcode FROM branches ORDER BY branchcode") == [
        (CONSORT,), (A,)]  # no branch per other member
    with holding(A):
        after = check_member(load_config(config), A)
    assert after.ready, after.lines()


def test_a_cross_return_lands_at_consort_and_the_store_keeps_the_holder(koha_both):
    world, config = koha_both
    prepared_one_branch(world, config)
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)

    rt, reports = _cycle(config)

    assert not any(r.errors for r in reports.values())
    row = item_row(world, A, BOOK)
    assert (row.holdingbranch, row.onloan) == (CONSORT, None)
    assert ils(world, A, "SELECT itemnotes_nonpublic FROM items WHERE barcode = :b",
               b=BOOK) == [(f"circhub: away at consortium member {B}",)]
    assert ils(world, A, "SELECT COUNT(*) FROM issues") == [(0,)]
    [close] = commands(rt, BOOK, target=A)
    assert close.status == "applied"

    rt, reports = _cycle(config)  # the owner's item and old loan read back: nothing moves

    assert central_holder(rt, BOOK) == B
    assert not any(r.errors for r in reports.values())
    assert [c.kind for c in commands(rt, BOOK, target=A)] == ["close_loan"]  # converged

    world.checkout(BOOK, B, reader(world, B))  # secondary circulation, then a third member
    world.checkin(BOOK, C)
    rt, reports = _cycle(config)
    rt, reports = _cycle(config)

    assert not any(r.errors for r in reports.values())
    assert central_holder(rt, BOOK) == C
    assert item_row(world, A, BOOK).holdingbranch == CONSORT
    assert ils(world, A, "SELECT itemnotes_nonpublic FROM items WHERE barcode = :b",
               b=BOOK) == [(f"circhub: away at consortium member {C}",)]


def test_a_staff_note_is_never_overwritten(koha):
    world, config = koha
    prepared_one_branch(world, config)
    with world.desks[A].engine.begin() as conn:
        conn.execute(text("UPDATE items SET itemnotes_nonpublic = 'spine repaired' "
                          "WHERE barcode = :b"), {"b": BOOK})
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)

    rt, reports = _cycle(config)

    assert not any(r.errors for r in reports.values())
    assert ils(world, A, "SELECT holdingbranch, itemnotes_nonpublic FROM items "
                         "WHERE barcode = :b", b=BOOK) == [(CONSORT, "spine repaired")]


def test_a_return_home_moves_the_book_home_in_koha_and_the_store(koha_both):
    world, config = koha_both
    prepared_one_branch(world, config)
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    _cycle(config)
    world.checkout(BOOK, B, reader(world, B))
    _cycle(config)

    world.checkin(BOOK, A)  # returned at its owner's desk
    rt, reports = _cycle(config)
    rt, reports = _cycle(config)

    assert not any(r.errors for r in reports.values())
    assert central_holder(rt, BOOK) == A
    assert item_row(world, A, BOOK).holdingbranch == A
    assert ils(world, A, "SELECT COUNT(*) FROM issues") == [(0,)]


def test_a_transfer_home_from_a_one_branch_holder_goes_to_consort_naming_the_owner(koha):
    """B, holding A's book on its shelf, chose one branch: Koha's transfer goes to CONSORT."""
    world, config = koha
    as_real_koha(world, B)
    one_branch_at(config, B)
    consortium = load_config(config)
    prepare_member(consortium, consortium.member(B), world.desks[B].engine)
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    _cycle(config)

    rt = open_runtime(str(config))
    request_transfer(rt.store, rt.consortium, BOOK, at=world.tick())
    reports = push(rt)

    assert not any(r.errors for r in reports.values())
    assert ils(world, B, "SELECT frombranch, tobranch, comments FROM branchtransfers") == [
        (B, CONSORT, f"circhub: return to owner {A}")]

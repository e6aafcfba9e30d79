"""Retries with exponential backoff and jitter, dead letters retried or resolved by command,
dry runs for members with write-back off, and the order of one item's commands.

A failure at the ILS is made by a MariaDB trigger that refuses to update one book (as an ILS
locks an item during inventory): the rest of the member's write-backs go through.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from typer.testing import CliRunner

from circhub.cli import app
from circhub.connections.runtime import open_runtime
from circhub.tasks.writeback.outbox import RetryPolicy
from tests.helpers import consortium_settings
from tests.writeback import (
    BOOK,
    A,
    B,
    commands,
    ils,
    item_row,
    lock_item,
    push,
    reader,
    sync,
    unlock_items,
)

OTHER = "SC0010000002"  # another of A's books




def _returned_at_b(world, *barcodes):
    issues = {}
    for barcode in barcodes:
        world.checkout(barcode, A, reader(world, A))
        issues[barcode] = world.books[barcode].loan[1]
        world.checkin(barcode, B)
    return issues


def _cli(config, *args):
    result = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["outbox", *args, "-c", str(config)])
    assert result.exit_code == 0, result.output
    return result.output


def test_backoff_doubles_with_jitter_and_never_exceeds_the_cap():
    policy = RetryPolicy(max_attempts=9, base_seconds=30, cap_seconds=600)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 30), (2, 60), (3, 120), (4, 240), (5, 480), (6, 600), (8, 600)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not one fixed value


def test_a_failing_command_backs_off_then_goes_dead_then_is_retried_by_command(koha):
    world, config = koha
    consortium_settings(config, writeback_max_attempts=3)
    issues = _returned_at_b(world, BOOK, OTHER)
    rt = sync(config)
    lock_item(world, A, BOOK)
    t0 = datetime(2030, 1, 1, 9, 0)

    push(rt, now=t0)

    [cmd] = commands(rt, BOOK, target=A)
    assert (cmd.status, cmd.attempts) == ("pending", 1)
    assert "item locked for inventory" in cmd.last_error
    assert t0 + timedelta(seconds=15) <= cmd.next_attempt_at <= t0 + timedelta(seconds=30)
    assert ils(world, A, "SELECT issue_id FROM issues WHERE issue_id = :i",
               i=issues[BOOK]) != []  # one ILS transaction: nothing of it stayed
    assert [c.status for c in commands(rt, OTHER, target=A)] == ["applied"]  # others go on

    push(rt, now=t0 + timedelta(seconds=10))  # inside the backoff: not tried
    assert commands(rt, BOOK, target=A)[0].attempts == 1
    push(rt, now=t0 + timedelta(seconds=31))
    cmd = commands(rt, BOOK, target=A)[0]
    assert (cmd.status, cmd.attempts) == ("pending", 2)
    later = t0 + timedelta(seconds=31)
    assert later + timedelta(seconds=30) <= cmd.next_attempt_at <= later + timedelta(seconds=60)
    push(rt, now=t0 + timedelta(hours=1))

    cmd = commands(rt, BOOK, target=A)[0]
    assert (cmd.status, cmd.attempts) == ("dead", 3)
    listing = _cli(config, "list", "--status", "dead")
    assert BOOK in listing and "item locked" in listing

    unlock_items(world, A)
    _cli(config, "retry", str(cmd.id))
    push(rt)

    cmd = commands(rt, BOOK, target=A)[0]
    assert (cmd.status, cmd.attempts) == ("applied", 1)
    assert ils(world, A, "SELECT issue_id FROM issues") == []
    assert len(ils(world, A, "SELECT * FROM old_issues WHERE issue_id = :i",
                   i=issues[BOOK])) == 1


def test_a_dead_command_resolved_by_hand_is_never_applied(koha):
    world, config = koha
    consortium_settings(config, writeback_max_attempts=1)
    issues = _returned_at_b(world, BOOK)
    rt = sync(config)
    lock_item(world, A, BOOK)
    push(rt)
    [cmd] = commands(rt, BOOK, target=A)
    assert cmd.status == "dead"

    _cli(config, "resolve", str(cmd.id), "--note", "closed at A's desk by hand")
    unlock_items(world, A)
    push(rt)

    [cmd] = commands(rt, BOOK, target=A)
    assert cmd.status == "resolved" and "closed at A's desk by hand" in cmd.outcome
    assert ils(world, A, "SELECT issue_id FROM issues") == [(issues[BOOK],)]


def test_a_member_with_write_back_off_gets_its_commands_computed_and_shown_not_applied(koha):
    world, config = koha
    config.write_text(config.read_text().replace(f'code = "{A}"\n',
                                                 f'code = "{A}"\nwriteback = false\n'))
    open_runtime.cache_clear()
    issues = _returned_at_b(world, BOOK)
    rt = sync(config)

    report = push(rt)[A]

    assert (report.held, report.applied) == (1, 0)
    [shown] = report.dry_run
    assert (shown["kind"], shown["barcode"], shown["holder"]) == ("close_loan", BOOK, B)
    # (the two staff-note steps are listed too: they are for one-branch members, `when`)
    assert shown["steps"] == ("copy_row issues; delete issues; insert_missing statistics; "
                              "update items; update items; update items; insert_missing issues")
    assert ils(world, A, "SELECT issue_id FROM issues") == [(issues[BOOK],)]
    assert "dry run" in _cli(config, "list", "--member", A)

    config.write_text(config.read_text().replace("writeback = false\n", ""))
    rt = open_runtime.__wrapped__(str(config))  # write-back switched on after onboarding
    push(rt)
    assert ils(world, A, "SELECT issue_id FROM issues") == []


def test_a_late_older_command_never_regresses_what_the_owner_shows(koha):
    world, config = koha
    consortium_settings(config, writeback_max_attempts=1)
    _returned_at_b(world, BOOK)
    rt = sync(config)
    lock_item(world, A, BOOK)
    push(rt)
    [old] = commands(rt, BOOK, target=A)
    assert old.status == "dead"  # 'held at B, not on loan', as of the return at B
    unlock_items(world, A)
    world.checkout(BOOK, B, reader(world, B))  # newer: lent again at B
    due = item_row(world, B, BOOK).onloan
    rt = sync(config)
    push(rt)
    assert (item_row(world, A, BOOK).holdingbranch, item_row(world, A, BOOK).onloan) == (B, due)

    _cli(config, "retry", str(old.id))  # an operator retries the old dead letter
    push(rt)

    old = commands(rt, BOOK, target=A)[0]
    assert old.status == "applied" and "update items 0" in old.outcome
    assert (item_row(world, A, BOOK).holdingbranch, item_row(world, A, BOOK).onloan) == (B, due)


def test_a_failed_command_holds_back_the_later_commands_of_its_item_only(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    world.checkout(OTHER, A, reader(world, A))
    world.checkin(OTHER, B)
    rt = sync(config)
    push(rt)
    from circhub.tasks.circulation.transfers import request_transfer

    for barcode in (BOOK, OTHER):  # both asked home; they arrive, B is told twice each
        request_transfer(rt.store, rt.consortium, barcode, at=world.tick())
    push(rt)
    world.checkin(BOOK, A)
    world.checkin(OTHER, A)
    rt = sync(config)
    lock_item(world, B, BOOK)  # B's copy of BOOK cannot be updated for now

    push(rt)

    kinds = {(c.barcode, c.kind): c for c in commands(rt, target=B, status="pending")}
    assert kinds[(BOOK, "set_item")].attempts == 1  # failed
    assert kinds[(BOOK, "transfer_arrived")].attempts == 0  # waits behind it
    assert [c.status for c in commands(rt, OTHER, target=B, kind="transfer_arrived")] == [
        "applied"]
    assert world.desks[B].transfers(BOOK)[0]["datearrived"] is None

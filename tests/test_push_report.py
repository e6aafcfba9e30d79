"""What one push tells its operator and leaves in the central store: applied, failed, waiting
and dead commands counted apart, each failure in the words of the step that failed and each
retry's time, the jitter's range, a lowered attempt limit obeyed, a claimed return noted on
that one loan only, a member's push touching its own commands only, a resolution kept when
the book moves on, nothing queued by a quiet cycle, only pending commands shown while
write-back is off, a stale claim refused, and a desk's own return after a failed push kept as
the desk's, not taken for the hub's echo.

A failure at the ILS is made by `lock_item` (tests/writeback.py): a MariaDB trigger refuses
to update one book, as an ILS locks an item during inventory.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import select

from circhub.connections.holds import holding
from circhub.connections.runtime import open_runtime
from circhub.domain.schema import circulation_events, loans
from circhub.tasks.sync.cycle import run_cycle
from circhub.tasks.writeback.outbox import (
    RetryPolicy,
    acknowledge,
    claim,
    pending_commands,
    record_failure,
    resolve_commands,
)
from circhub.tasks.writeback.push import push_member
from tests.helpers import consortium_settings
from tests.writeback import (
    BOOK,
    A,
    B,
    C,
    commands,
    lock_item,
    push,
    reader,
    sync,
    unlock_items,
)

OTHER = "SC0010000002"  # another of A's books


class _Edge(random.Random):
    """A jitter source that always draws one end of its range."""

    def __init__(self, high: bool):
        super().__init__(0)
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_the_jitter_spans_exactly_half_the_ceiling_to_all_of_it():
    policy = RetryPolicy(max_attempts=9, base_seconds=30, cap_seconds=600)
    for attempt, ceiling in [(1, 30), (2, 60), (6, 600)]:
        assert policy.delay(attempt, _Edge(high=False)) == ceiling / 2
        assert policy.delay(attempt, _Edge(high=True)) == ceiling


def test_a_push_counts_failures_apart_from_dead_letters_in_the_failing_steps_words(koha):
    world, config = koha
    rt = _owed_closes_with_book_locked(world, config, 2, (BOOK, OTHER))
    t0 = datetime(2030, 1, 1, 9, 0)

    first = push(rt, now=t0)[A]

    assert (first.applied, first.failed, first.dead) == (1, 1, 0)  # OTHER went through
    [cmd] = commands(rt, BOOK, target=A)
    # The step's own words (its label, then the ILS's message), not a Python class name.
    assert not cmd.last_error.startswith("Step") and "item locked" in cmd.last_error
    assert first.errors == [f"member {A}: close_loan {BOOK}: {cmd.last_error}"]
    assert cmd.outcome == f"attempt 1 failed; next not before {cmd.next_attempt_at:%F %T}"
    [done] = commands(rt, OTHER, target=A)
    assert done.outcome.startswith("rows matched: ")  # the ILS rows it changed

    waiting = push(rt, now=t0 + timedelta(seconds=10))[A]  # inside the backoff: not tried

    assert (waiting.waiting, waiting.failed) == (1, 0)

    second = push(rt, now=cmd.next_attempt_at)[A]  # its time has come: tried

    assert (second.applied, second.failed, second.dead) == (0, 1, 1)
    dead = commands(rt, BOOK, target=A)[0]
    assert (dead.status, dead.outcome) == ("dead", "dead after 2 attempts")


def test_a_command_past_a_lowered_attempt_limit_goes_dead_at_its_next_failure(koha):
    world, config = koha
    rt = _owed_closes_with_book_locked(world, config, 5)
    t0 = datetime(2030, 1, 1, 9, 0)
    push(rt, now=t0)
    push(rt, now=t0 + timedelta(hours=1))
    assert commands(rt, BOOK, target=A)[0].attempts == 2
    # the operator lowers the limit
    config.write_text(config.read_text().replace("writeback_max_attempts = 5",
                                                 "writeback_max_attempts = 1"))
    open_runtime.cache_clear()
    rt = open_runtime(str(config))

    push(rt, now=t0 + timedelta(hours=2))

    cmd = commands(rt, BOOK, target=A)[0]
    assert (cmd.status, cmd.attempts, cmd.outcome) == ("dead", 3, "dead after 3 attempts")


def test_a_claimed_return_is_noted_on_that_loan_only(koha):
    """The return time a push is about to write is noted on the loan it closes (its echo is
    then known): not on the same loan number at another member (codes on either side of the
    owner's), nor on an earlier or a later loan of its own."""
    world, config = koha
    for member in (A, C):  # loans 1 and 2 at the members either side of B in code order
        for n in (1, 2):
            world.checkout(f"{member}{n:07d}", member, reader(world, member))
    world.checkout(f"{B}0000003", B, reader(world, B))  # B's loan 1, still out
    book = f"{B}0000001"
    world.checkout(book, B, reader(world, B))  # B's loan 2: returned at A, closed by the hub
    issue = world.books[book].loan[1]
    world.checkin(book, A)
    world.checkout(f"{B}0000002", B, reader(world, B))  # B's loan 3, still out
    rt = sync(config)

    push(rt)

    with rt.store.connect() as conn:
        noted = dict(conn.execute(select(loans.c.member + "/" + loans.c.local_id,
                                         loans.c.pushed_returned_at)).all())
    assert noted.pop(f"{B}/{issue}") is not None
    assert {f"{A}/{issue}", f"{C}/{issue}"} <= set(noted) and len(noted) == 6
    assert set(noted.values()) == {None}


def test_a_resolved_command_stays_resolved_when_its_book_moves_on(koha):
    """An operator's resolution is a record: the book's later states supersede pending
    commands only, never a resolved one."""
    world, config = koha
    rt = _owed_closes_with_book_locked(world, config, 1)
    push(rt)
    [cmd] = commands(rt, BOOK, target=A)
    assert resolve_commands(rt.store, [cmd.id], "closed at A's desk by hand") == 1
    unlock_items(world, A)
    world.checkin(BOOK, A)  # A's staff close the loan at their desk

    rt = sync(config)

    assert [c.status for c in commands(rt, BOOK, target=A) if c.id == cmd.id] == ["resolved"]


def test_a_cycle_with_nothing_new_queues_no_command(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))
    world.checkin(BOOK, B)
    push(sync(config))
    rt = open_runtime(str(config))

    outcomes = run_cycle(rt, [m.code for m in rt.consortium.members])

    assert {code: o.counts()["commands"] for code, o in outcomes.items()} == \
        dict.fromkeys(outcomes, 0)


def test_a_members_push_touches_only_its_own_commands(koha):
    world, config = koha
    world.checkout(BOOK, A, reader(world, A))  # A is owed a close
    world.checkin(BOOK, B)
    for member in (B, C):  # and so are the members whose codes sort before A's
        book = f"{member}0000001"
        world.checkout(book, member, reader(world, member))
        world.checkin(book, A)
    rt = sync(config)

    with holding(A):
        report = push_member(rt.store, rt.consortium, rt.consortium.member(A))

    assert report.applied == 1
    others = [c for c in commands(rt) if c.target != A]
    assert others and {(c.status, c.attempts) for c in others} == {("pending", 0)}


def test_write_back_switched_off_shows_the_pending_commands_alone(koha):
    """A member whose write-back is off (onboarding, maintenance) is shown what a push would
    apply: its pending commands, never those already applied or settled by hand."""
    world, config = koha
    rt = _owed_closes_with_book_locked(world, config, 1, barcodes=(BOOK, OTHER))
    push(rt)  # OTHER's close applied; BOOK's dead at its first failure, then settled by hand
    [dead] = commands(rt, BOOK, target=A)
    assert resolve_commands(rt.store, [dead.id], "closed at A's desk by hand") == 1
    third = f"{A}0000003"
    world.checkout(third, A, reader(world, A))
    world.checkin(third, B)
    config.write_text(config.read_text().replace(f'code = "{A}"\n',
                                                 f'code = "{A}"\nwriteback = false\n'))
    open_runtime.cache_clear()
    rt = sync(config)

    report = push(rt)[A]

    assert (report.held, [c["barcode"] for c in report.dry_run]) == (1, [third])
    assert {c.barcode: c.status for c in commands(rt, target=A)} == \
        {OTHER: "applied", BOOK: "resolved", third: "pending"}


def test_a_claim_refuses_a_command_no_longer_pending(koha):
    """The claim is the last guard against a double delivery: a pusher holding a stale read
    (another applied the command, or it went dead, in between) must not deliver it again."""
    world, config = koha
    rt = _owed_closes_with_book_locked(world, config, 5, barcodes=(BOOK, OTHER))
    stale = {c.barcode: c for c in pending_commands(rt.store, A)}
    now = datetime(2030, 1, 1, 9, 0)
    acknowledge(rt.store, stale[OTHER], "applied by another pusher", now)
    record_failure(rt.store, stale[BOOK], "refused", RetryPolicy.of(rt.consortium), now,
                   random.Random(0), permanent=True)

    assert [claim(rt.store, stale[b], now) for b in (OTHER, BOOK)] == [False, False]
    assert {c.barcode: (c.status, c.attempts) for c in commands(rt, target=A)} == \
        {OTHER: ("applied", 0), BOOK: ("dead", 0)}


def _owed_closes_with_book_locked(world, config, attempts: int, barcodes=(BOOK,)):
    """A's books lent at A and returned at B, BOOK locked at A: its close keeps failing."""
    consortium_settings(config, writeback_max_attempts=attempts)
    for barcode in barcodes:
        world.checkout(barcode, A, reader(world, A))
        world.checkin(barcode, B)
    rt = sync(config)
    lock_item(world, A, BOOK)
    return rt


def test_a_return_the_owners_desk_records_after_a_push_that_failed_is_not_taken_for_an_echo(
        koha):
    """The claim noted the return time the push was about to write; the write failed, and A's
    staff closed the loan at their own desk later. What A shows is their check-in, not the
    hub's echo: it is an event of its own, at A, at the desk's time."""
    world, config = koha
    rt = _owed_closes_with_book_locked(world, config, 5)
    push(rt)  # claimed (its return time noted on the loan), then refused by the lock
    unlock_items(world, A)
    world.checkin(BOOK, A)

    rt = sync(config)

    with rt.store.connect() as conn:
        events = conn.execute(select(circulation_events.c.kind, circulation_events.c.member,
                                     circulation_events.c.at)
                              .where(circulation_events.c.barcode == BOOK)
                              .order_by(circulation_events.c.at,
                                        circulation_events.c.kind)).all()
    assert [(e.kind, e.member) for e in events] == \
        [("issued", A), ("seen", B), ("returned", A), ("seen", A)]
    assert events[2].at > events[1].at  # the desk's time, not the return at B the push carried

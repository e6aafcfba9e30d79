"""What happens while a push is in the middle of a member's commands.

A member whose connection drops: the command in flight counts one failed attempt, and the
member's later commands wait for the next push, untried (a member that went away is not asked
again and again within one push, spending every command's attempts). A command superseded by
a sync meanwhile: never applied, and the commands after it still go through.

The stall is real: a MariaDB trigger holds the owner's update of one book in `SLEEP`; an
administrator's `KILL CONNECTION` ends the pusher's session there, as a server restart or a
network cut would, or `KILL QUERY` ends just that statement.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import create_engine, text

from tests.conftest import MARIADB_ADMIN
from tests.writeback import BOOK, A, B, C, commands, item_row, push, reader, sync

OTHER = "SC0010000002"  # another of A's books
THIRD = "SC0010000003"


def test_a_member_lost_mid_push_keeps_its_later_commands_untried(koha):
    world, config = koha
    for barcode in (BOOK, OTHER):  # two returns owed to A, BOOK's queued first
        world.checkout(barcode, A, reader(world, A))
        world.checkin(barcode, B)
    rt = sync(config)
    _stall(world, BOOK)
    killer = threading.Thread(target=_when_stalled, args=(world, "CONNECTION"))
    killer.start()

    report = push(rt)[A]
    killer.join()

    assert (report.applied, report.failed, report.dead) == (0, 1, 0)
    [lost] = commands(rt, BOOK, target=A)
    assert (lost.status, lost.attempts) == ("pending", 1)
    [later] = commands(rt, OTHER, target=A)
    assert (later.status, later.attempts, later.last_error) == ("pending", 0, None)


def test_a_command_superseded_mid_push_is_never_applied_and_the_next_still_is(koha):
    world, config = koha
    world.checkout(OTHER, A, reader(world, A))
    world.checkin(OTHER, B)
    push(sync(config))  # A shows OTHER held at B
    for barcode in (BOOK, THIRD):  # in queue order: BOOK's return, OTHER lent at B, THIRD's
        if barcode == THIRD:
            world.checkout(OTHER, B, reader(world, B))
            sync(config)
        world.checkout(barcode, A, reader(world, A))
        world.checkin(barcode, B)
        sync(config)
    rt = sync(config)
    [stale] = commands(rt, OTHER, target=A, status="pending")  # 'on loan at B until ...'
    shown = item_row(world, A, OTHER)
    _stall(world, BOOK)

    def meanwhile():  # OTHER comes back at C: the hub's next sync supersedes the command
        world.checkin(OTHER, C)
        sync(config, [C])

    waiter = threading.Thread(target=_when_stalled, args=(world, "QUERY", meanwhile))
    waiter.start()
    report = push(rt)[A]
    waiter.join()

    assert [c.status for c in commands(rt, OTHER, target=A) if c.id == stale.id] == \
        ["superseded"]
    now = item_row(world, A, OTHER)
    assert (now.holdingbranch, now.onloan) == (shown.holdingbranch, shown.onloan)  # untouched
    assert [c.status for c in commands(rt, THIRD, target=A)] == ["applied"]
    assert (report.applied, report.failed) == (1, 1)  # THIRD; BOOK's statement was killed


def _stall(world, barcode: str) -> None:
    with world.desks[A].engine.begin() as conn:
        conn.execute(text(
            "CREATE TRIGGER circhub_test_stall BEFORE UPDATE ON items FOR EACH ROW BEGIN "
            f"IF NEW.barcode = '{barcode}' THEN DO SLEEP(60); END IF; END"))


def _when_stalled(world, kill: str, meanwhile=None) -> None:
    """Once A's update is stalled: run `meanwhile`, then KILL the stalled session or query."""
    database = world.desks[A].engine.url.database
    admin = create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 60
    try:
        with admin.connect() as conn:
            while time.monotonic() < deadline:
                stalled = conn.execute(text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = :db AND state = 'User sleep'"), {"db": database}).scalars().all()
                if stalled:
                    if meanwhile:
                        meanwhile()
                    conn.execute(text(f"KILL {kill} {int(stalled[0])}"))
                    return
                time.sleep(0.05)
    finally:
        admin.dispose()

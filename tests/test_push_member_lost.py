"""A member whose connection drops in the middle of a push: the command in flight counts one
failed attempt, and the member's later commands wait for the next push, untried (a member that
went away is not asked again and again within one push, spending every command's attempts).

The drop is real: a MariaDB trigger holds the owner's update of one book in `SLEEP`, and an
administrator's `KILL CONNECTION` ends the pusher's session there, as a server restart or a
network cut would.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import create_engine, text

from tests.conftest import MARIADB_ADMIN
from tests.writeback import BOOK, A, B, commands, push, reader, sync

OTHER = "SC0010000002"  # another of A's books


def test_a_member_lost_mid_push_keeps_its_later_commands_untried(koha):
    world, config = koha
    for barcode in (BOOK, OTHER):  # two returns owed to A, BOOK's queued first
        world.checkout(barcode, A, reader(world, A))
        world.checkin(barcode, B)
    rt = sync(config)
    database = world.desks[A].engine.url.database
    with world.desks[A].engine.begin() as conn:
        conn.execute(text(
            "CREATE TRIGGER circhub_test_stall BEFORE UPDATE ON items FOR EACH ROW BEGIN "
            f"IF NEW.barcode = '{BOOK}' THEN DO SLEEP(30); END IF; END"))
    killer = threading.Thread(target=_kill_the_stalled_session, args=(database,))
    killer.start()

    report = push(rt)[A]
    killer.join()

    assert (report.applied, report.failed, report.dead) == (0, 1, 0)
    [lost] = commands(rt, BOOK, target=A)
    assert (lost.status, lost.attempts) == ("pending", 1)
    [later] = commands(rt, OTHER, target=A)
    assert (later.status, later.attempts, later.last_error) == ("pending", 0, None)


def _kill_the_stalled_session(database: str) -> None:
    admin = create_engine(MARIADB_ADMIN, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + 60
    try:
        with admin.connect() as conn:
            while time.monotonic() < deadline:
                stalled = conn.execute(text(
                    "SELECT id FROM information_schema.processlist "
                    "WHERE db = :db AND state = 'User sleep'"), {"db": database}).scalars().all()
                if stalled:
                    conn.execute(text(f"KILL CONNECTION {int(stalled[0])}"))
                    return
                time.sleep(0.05)
    finally:
        admin.dispose()

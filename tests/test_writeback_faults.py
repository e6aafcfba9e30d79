"""Write-back under faults: an owner down for a while, a pusher SIGKILLed between the ILS commit
and the acknowledgement, the central store's connections cut (or refused) mid-push.

Koha members on real MariaDB, the central store on real PostgreSQL; the asserts read the owning
member's own rows and the outbox. Never lost: every command is applied in the end. Never
doubled: the lender's loan is moved to `old_issues` exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, func, select, text

from circhub.connections.runtime import open_runtime
from circhub.domain.schema import circulation_events
from circhub.tasks.writeback.push import PAUSE_ENV
from tests.conftest import PG_ADMIN
from tests.writeback import (
    BOOK,
    A,
    B,
    C,
    commands,
    ils,
    item_row,
    push,
    reader,
    sync,
)

ROOT = Path(__file__).resolve().parent.parent
DOWN = "mysql+pymysql://root@127.0.0.1:1/not_there"  # nothing listens on port 1




def _owed_a_close(world, config):
    """A lent the book, it came back at B: A's ILS still shows the loan; the hub owes A a close."""
    world.checkout(BOOK, A, reader(world, A))
    issue = world.books[BOOK].loan[1]
    world.checkin(BOOK, B)
    return sync(config), issue, world.journal[-1][0]


def _closed_once(world, issue, returned_at) -> None:
    assert ils(world, A, "SELECT issue_id FROM issues WHERE issue_id = :i", i=issue) == []
    rows = ils(world, A, "SELECT returndate, checkin_library FROM old_issues "
                         "WHERE issue_id = :i", i=issue)
    assert [tuple(r) for r in rows] == [(returned_at, B)]


def _reconfigure(config: Path, text_: str):
    config.write_text(text_)
    open_runtime.cache_clear()
    return open_runtime(str(config))


def test_an_owner_down_for_a_while_keeps_its_commands_and_gets_each_once_when_back(koha):
    world, config = koha
    rt, issue, returned_at = _owed_a_close(world, config)
    good = config.read_text()
    rt = _reconfigure(config, good.replace(rt.consortium.member(A).connection, DOWN))

    for _ in range(3):  # several push cycles while A does not answer
        assert push(rt)[A].unreachable
    world.checkout(BOOK, B, reader(world, B))  # life goes on at B meanwhile
    due = item_row(world, B, BOOK).onloan
    sync(config, [B, C])
    [waiting] = commands(rt, BOOK, target=A, status="pending")
    assert (waiting.attempts, waiting.next_attempt_at) == (0, None)  # no attempt was spent

    rt = _reconfigure(config, good)
    push(rt)
    push(rt)

    _closed_once(world, issue, returned_at)
    owner_row = item_row(world, A, BOOK)
    assert (owner_row.holdingbranch, owner_row.onloan) == (B, due)
    [applied] = commands(rt, BOOK, target=A, status="applied")
    assert applied.attempts == 1
    assert {c.status for c in commands(rt, BOOK, target=A)} == {"applied", "superseded"}


def _start_push(config: Path, member: str, pause: Path) -> subprocess.Popen:
    env = {**os.environ, PAUSE_ENV: str(pause)}
    return subprocess.Popen([sys.executable, "-m", "tests.push_runner", str(config), member],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_until_paused(proc: subprocess.Popen, pause: Path) -> None:
    deadline = time.monotonic() + 60
    while not list(pause.glob("paused-*")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the pusher never reached the pause point"
        time.sleep(0.05)


def test_a_pusher_killed_between_ils_commit_and_acknowledgement_applies_once_on_replay(
        koha, tmp_path):
    world, config = koha
    rt, issue, returned_at = _owed_a_close(world, config)
    pause = tmp_path / "pause"
    pause.mkdir()
    proc = _start_push(config, A, pause)
    _wait_until_paused(proc, pause)

    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    _closed_once(world, issue, returned_at)  # the ILS has it...
    [cmd] = commands(rt, BOOK, target=A)
    assert (cmd.status, cmd.attempts) == ("pending", 1)  # ...the outbox does not know yet

    push(rt)  # the replay

    _closed_once(world, issue, returned_at)
    [cmd] = commands(rt, BOOK, target=A)
    assert (cmd.status, cmd.attempts) == ("applied", 2)
    assert "copy_row issues 0" in cmd.outcome  # the loan row was not there to move again
    with rt.store.connect() as conn:
        events = conn.execute(select(func.count()).select_from(circulation_events)).scalar()
    rt = sync(config)  # reading A back: the hub knows it wrote that return
    with rt.store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(circulation_events)).scalar() \
            == events
    assert commands(rt, status="pending") == []


def _central(rt):
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    return admin, rt.store.url.database


def _cut_connections(admin, database: str) -> int:
    with admin.connect() as conn:
        return len(conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database}).all())


def test_central_store_connections_cut_mid_push_lose_no_command(koha, tmp_path):
    """The 'central restart' here terminates the PostgreSQL connections of this test's own
    central database (pg_terminate_backend), not the server, which other tests share."""
    world, config = koha
    rt, issue, returned_at = _owed_a_close(world, config)
    admin, database = _central(rt)
    pause = tmp_path / "pause"
    pause.mkdir()
    proc = _start_push(config, A, pause)
    _wait_until_paused(proc, pause)

    assert _cut_connections(admin, database) >= 1
    (pause / "resume").touch()

    out, errors = proc.communicate(timeout=60)
    assert proc.returncode == 0, errors  # the acknowledgement reconnected
    _closed_once(world, issue, returned_at)
    [cmd] = commands(rt, BOOK, target=A)
    assert (cmd.status, cmd.attempts) == ("applied", 1)
    admin.dispose()


def test_central_store_down_at_acknowledgement_loses_nothing_and_the_replay_applies_once(
        koha, tmp_path):
    """The central database refuses connections (ALLOW_CONNECTIONS false on this test's own
    database, its connections terminated) while the pusher is between the ILS commit and the
    acknowledgement; the server itself keeps running for other tests."""
    world, config = koha
    rt, issue, returned_at = _owed_a_close(world, config)
    admin, database = _central(rt)
    pause = tmp_path / "pause"
    pause.mkdir()
    proc = _start_push(config, A, pause)
    _wait_until_paused(proc, pause)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false'))
        _cut_connections(admin, database)
        (pause / "resume").touch()
        proc.communicate(timeout=60)
        assert proc.returncode != 0  # it could not acknowledge
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'))
    _closed_once(world, issue, returned_at)
    [cmd] = commands(rt, BOOK, target=A)
    assert cmd.status == "pending"  # not lost: still owed as far as the hub knows

    push(rt)

    _closed_once(world, issue, returned_at)
    [cmd] = commands(rt, BOOK, target=A)
    assert (cmd.status, cmd.attempts) == ("applied", 2)
    admin.dispose()

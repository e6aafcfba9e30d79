"""Builders the write-back tests share: Koha members on real MariaDB, the central store on real
PostgreSQL, syncs and pushes run as plain stage calls, and readers of the members' own rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text

from circhub.connections.config import load_config
from circhub.connections.engines import central_url, engine_for
from circhub.connections.holds import holding
from circhub.connections.runtime import Runtime, open_runtime
from circhub.domain.schema import circulation_exceptions, outbox
from circhub.tasks.sync.cycle import run_cycle
from circhub.tasks.writeback.push import PushReport, push_member, targets_with_pending
from tests.helpers import koha_consortium

A, B, C = "SC001", "CQ001", "CD001"  # the first three simulated members
BOOK = "SC0010000001"  # owned by A


def koha_on_mariadb(tmp_path: Path, mariadb_db, pg_db, members: int = 3, **kw):
    return koha_consortium(tmp_path, [mariadb_db() for _ in range(members)], pg_db(), **kw)


@pytest.fixture
def koha(tmp_path, mariadb_db, pg_db):
    """Three Koha members on MariaDB and a PostgreSQL central store, pools closed after."""
    world, config = koha_on_mariadb(tmp_path, mariadb_db, pg_db)
    yield world, config
    dispose(world, config)


@pytest.fixture(params=["koha", "koha_2311"])
def koha_both(request, tmp_path, mariadb_db, pg_db):
    """Three Koha members of one generation: with checkin_library (Koha bug 33641), and
    without (e.g. 23.11, returns only in `statistics`)."""
    world, config = koha_on_mariadb(tmp_path, mariadb_db, pg_db, kind=request.param)
    yield world, config
    dispose(world, config)


def dispose(world, config: Path) -> None:
    """Give the pooled connections back: MariaDB's connection limit is shared by every suite
    running on this machine."""
    for desk in world.desks.values():
        desk.engine.dispose()
    consortium = load_config(config)
    for url in [m.connection for m in consortium.members] + [central_url(consortium)]:
        if url:
            engine_for(url).dispose()


def reader(world, home: str):
    return next(p for p in world.people if p.home == home)


def sync(config: Path, codes: list[str] | None = None) -> Runtime:
    """Extract, validate and merge the members named (default: all), without pushing."""
    rt = open_runtime(str(config))
    chosen = [m.code for m in rt.consortium.members if codes is None or m.code in codes]
    outcomes = run_cycle(rt, chosen, push=False)
    failed = {code: o.error() for code, o in outcomes.items() if not o.ok}
    assert not failed, f"members failed: {failed}"
    return rt


def lock_item(world, member: str, barcode: str) -> None:
    """A MariaDB trigger refuses every update of one book at `member` (as an ILS locks an item
    during inventory): its write-backs fail there, the rest go through."""
    with world.desks[member].engine.begin() as conn:
        conn.execute(text(
            "CREATE TRIGGER circhub_test_lock BEFORE UPDATE ON items FOR EACH ROW BEGIN "
            f"IF NEW.barcode = '{barcode}' THEN SIGNAL SQLSTATE '45000' "
            "SET MESSAGE_TEXT = 'item locked for inventory'; END IF; END"))


def unlock_items(world, member: str) -> None:
    with world.desks[member].engine.begin() as conn:
        conn.execute(text("DROP TRIGGER circhub_test_lock"))


def push(rt: Runtime, **kw) -> dict[str, PushReport]:
    return {t: _push_one(rt, t, **kw) for t in targets_with_pending(rt.store)}


def _push_one(rt: Runtime, target: str, **kw) -> PushReport:
    with holding(target):
        return push_member(rt.store, rt.consortium, rt.consortium.member(target), **kw)


def ils(world, member: str, sql: str, **params) -> list:
    """Rows of one member's own ILS database."""
    with world.desks[member].engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def item_row(world, member: str, barcode: str):
    return ils(world, member, "SELECT * FROM items WHERE barcode = :b", b=barcode)[0]


def commands(rt: Runtime, barcode: str | None = None, **equal) -> list:
    q = select(outbox).order_by(outbox.c.id)
    if barcode:
        q = q.where(outbox.c.barcode == barcode)
    for col, value in equal.items():
        q = q.where(outbox.c[col] == value)
    with rt.store.connect() as conn:
        return conn.execute(q).all()


def exceptions_of(rt: Runtime, barcode: str) -> list:
    q = select(circulation_exceptions).where(circulation_exceptions.c.barcode == barcode)
    with rt.store.connect() as conn:
        return conn.execute(q.order_by(circulation_exceptions.c.id)).all()

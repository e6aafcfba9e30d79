"""Every piece of work on a member's database takes that member's slot and a source connection,
through the one wrapper (`flows.slots.source_slots`): a member's database cannot be opened
outside it, a backfill and a sync of one member never hold its database together, and the
source-connection limit holds across them, counted by MariaDB itself (issue 17, item 4)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlalchemy import bindparam, create_engine, text

from circhub.connections.engines import member_engine, member_url
from circhub.connections.holds import SlotNotHeld, holding
from circhub.connections.runtime import open_runtime
from circhub.flows import slots
from tests.conftest import MARIADB_ADMIN
from tests.helpers import add_koha_items, koha_consortium

SOURCE_CONNECTIONS = 2
BACKFILL_ITEMS = 3000


# -- the gate, without Prefect ----------------------------------------------------------------
def test_a_members_database_is_shut_outside_its_slot_and_open_inside(tmp_path):
    world, config = koha_consortium(tmp_path, [f"sqlite:///{tmp_path}/m0.db"],
                                    f"sqlite:///{tmp_path}/c.db")
    member = open_runtime(str(config)).consortium.members[0]

    for opening in (member_url, member_engine):
        with pytest.raises(SlotNotHeld, match=f"member {member.code}: .*without its slot"):
            opening(member)
    with holding(member.code):
        with member_engine(member).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM items")).scalar() > 0
        other_thread: list[BaseException] = []
        worker = threading.Thread(target=_try_open, args=(member, other_thread))
        worker.start()
        worker.join()
    assert isinstance(other_thread[0], SlotNotHeld)  # a hold is this context's, not the process'
    with pytest.raises(SlotNotHeld):
        member_engine(member)  # given back with the block


def _try_open(member, errors: list) -> None:
    try:
        member_engine(member)
    except BaseException as exc:  # noqa: BLE001 - handed to the test
        errors.append(exc)


# -- a backfill and a sync of one member at once, on a real Prefect server ---------------------
@dataclass
class SlotLog(logging.Handler):
    """The wrapper's own lines: each hold from "slots taken" to "giving its slots back" (both
    logged inside the hold), and who waited. Wakes `on_waiting` once `waiters` wait on `code`."""

    code: str
    waiters: int
    on_waiting: threading.Event
    holds: dict = field(default_factory=dict)  # lease -> [member, taken, given back]
    waiting: list = field(default_factory=list)

    def __post_init__(self) -> None:
        logging.Handler.__init__(self, logging.DEBUG)

    def __hash__(self) -> int:
        return id(self)

    def emit(self, record: logging.LogRecord) -> None:
        code = record.args[0]
        if "waiting" in record.msg:
            self.waiting.append(code)
            if self.waiting.count(self.code) >= self.waiters:
                self.on_waiting.set()
        elif "taken" in record.msg:
            self.holds[record.args[1]] = [code, record.created, None]
        elif "giving" in record.msg:
            self.holds[record.args[1]][2] = record.created

    def intervals(self) -> list[tuple[str, float, float]]:
        return [tuple(h) for h in self.holds.values()]


class Sessions(threading.Thread):
    """Samples MariaDB's own list of open sessions on the member databases until stopped."""

    def __init__(self, databases: dict[str, str]):
        super().__init__(daemon=True)
        self.by_db = databases  # database name -> member code
        self.peak_total, self.peak = 0, dict.fromkeys(databases.values(), 0)
        self.samples, self.seen = 0, dict.fromkeys(databases.values(), 0)
        self.stop = threading.Event()

    def run(self) -> None:
        admin = create_engine(MARIADB_ADMIN)  # no default database: not counted itself
        query = text("SELECT db, COUNT(*) FROM information_schema.processlist "
                     "WHERE db IN :dbs GROUP BY db").bindparams(
            bindparam("dbs", expanding=True))
        with admin.connect() as conn:
            while not self.stop.is_set():
                counts = dict(conn.execute(query, {"dbs": list(self.by_db)}).all())
                self._record({self.by_db[db]: n for db, n in counts.items()})
                self.stop.wait(0.002)
        admin.dispose()

    def _record(self, open_now: dict[str, int]) -> None:
        self.samples += 1
        self.peak_total = max(self.peak_total, sum(open_now.values()))
        for code, n in open_now.items():
            self.peak[code] = max(self.peak[code], n)
            self.seen[code] += 1


def _most_at_once(intervals) -> int:
    edges = sorted([(start, 1) for _, start, _ in intervals]
                   + [(end, -1) for _, _, end in intervals], key=lambda e: (e[0], e[1]))
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def _overlapping(intervals) -> list[tuple]:
    ordered = sorted(intervals, key=lambda i: i[1])
    return [(a, b) for a, b in zip(ordered, ordered[1:], strict=False) if b[1] < a[2]]


@pytest.fixture
def three_koha_members(tmp_path, mariadb_db, pg_db):
    urls = [mariadb_db() for _ in range(3)]
    world, config = koha_consortium(tmp_path, urls, pg_db(), readers=8, items=10)
    config.write_text(config.read_text().replace(
        "max_source_connections = 8", f"max_source_connections = {SOURCE_CONNECTIONS}"))
    world.play(days=3, actions_per_day=20)  # loans, returns elsewhere: write-backs to push
    first = list(world.desks)[0]
    add_koha_items(world.desks[first], first, [world.clock - timedelta(hours=i)
                                               for i in range(BACKFILL_ITEMS)], first=5000)
    for desk in world.desks.values():
        desk.engine.dispose()  # the simulator's own sessions are not the hub's
    databases = {url.rsplit("/", 1)[1]: code for code, url in zip(world.desks, urls,
                                                                   strict=True)}
    return world, config, databases


@pytest.mark.usefixtures("prefect_server")
def test_a_backfill_and_a_sync_of_one_member_never_hold_its_database_together(
        three_koha_members, monkeypatch):
    from circhub.flows.backfill import backfill
    from circhub.flows.sync import sync_consortium

    world, config, databases = three_koha_members
    code = list(world.desks)[0]
    slots.ensure_limits(open_runtime(str(config)).consortium)
    both_waiting = threading.Event()
    log = SlotLog(code, waiters=2, on_waiting=both_waiting)
    _listen(monkeypatch, log)
    sessions = Sessions(databases)
    sessions.start()
    since = (world.clock - timedelta(hours=BACKFILL_ITEMS + 1)).isoformat()
    loaded: dict = {}

    def load() -> None:
        loaded["state"] = backfill(member=code, entity="items", since=since,
                                   window_hours=240, config=str(config), return_state=True)

    # The member is held while both runs start, so both wait for it and then race for it.
    with slots.source_slots(code, wait_seconds=30):
        backfilling = threading.Thread(target=load, daemon=True)
        backfilling.start()
        syncing = threading.Thread(target=lambda: loaded.update(
            synced=sync_consortium(config=str(config), return_state=True)), daemon=True)
        syncing.start()
        assert both_waiting.wait(120), f"waiting on {code}: {log.waiting}"
    backfilling.join(600)
    syncing.join(600)
    sessions.stop.set()
    sessions.join(10)

    assert loaded["state"].is_completed(), loaded["state"].message
    assert loaded["state"].result()["rows"] >= BACKFILL_ITEMS
    assert loaded["synced"].is_completed(), loaded["synced"].message
    assert all(row["status"] == "ok" for row in loaded["synced"].result().values())
    held = log.intervals()
    on_member = [h for h in held if h[0] == code]
    assert len(on_member) >= 3  # the starter's, the backfill's and the sync's extract
    assert _overlapping(on_member) == []  # one holder of the member at a time
    assert _most_at_once(held) <= SOURCE_CONNECTIONS
    # What MariaDB saw: never two sessions on the member, never more than the limit in all.
    assert sessions.seen[code] > 0, "no session on the member was ever sampled"
    assert sessions.peak[code] == 1, sessions.peak
    assert sessions.peak_total <= SOURCE_CONNECTIONS, sessions.peak


def _listen(monkeypatch, handler: logging.Handler) -> None:
    logger = logging.getLogger(slots.__name__)
    # A logging set-up run earlier in the session (Prefect's, a CLI test's) may have disabled
    # loggers it did not name: this one is wanted on.
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "level", logging.DEBUG)
    # Set as an attribute, the level bypasses the logger's cache of "is DEBUG on?": a debug
    # line logged earlier in the session left False there, and the full suite heard nothing.
    monkeypatch.setattr(logger, "_cache", {})
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "handlers", [*logger.handlers])  # removed at teardown

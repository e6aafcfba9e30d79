"""The fault campaign's harness (chaos/, `make chaos`), kept working by `make test`: a small
campaign of randomized fault schedules ends with nothing lost, doubled or wrong, and the
oracle is seen catching what it claims to catch (a write-back dropped, one applied twice).

The harness starts its own PostgreSQL and MariaDB instances (own data directories and ports,
killed and restarted by the schedules) and its own Prefect server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest
from helpers import sync_cycle
from sqlalchemy import create_engine, insert, select, text, update

from chaos import consortium as consortia
from chaos.campaign import Campaign
from chaos.harness import Harness
from chaos.links import Link
from chaos.oracle import check
from chaos.schedule import draw
from circhub.connections.engines import DEMO_ID_KEY
from circhub.connections.runtime import open_runtime
from circhub.domain.schema import outbox
from circhub.simulator.polaris import CHECKIN, headers

CAMPAIGN_SEED = 20261204
KOHA, EVERGREEN, POLARIS = "SC001", "CQ001", "CD001"  # consortium.KINDS, in member order


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    h = Harness(tmp_path_factory.mktemp("chaos"))
    yield h
    h.close()


def test_a_small_campaign_ends_with_nothing_lost_doubled_or_wrong(harness):
    campaign = Campaign(CAMPAIGN_SEED)
    for index in range(2):
        result = harness.run(draw(CAMPAIGN_SEED, index, tuple(consortia.member_codes())))
        campaign.add(result)
        assert result.ok, campaign.line(result)
    assert campaign.faults(), "the schedules injected no fault"


@pytest.mark.parametrize("server", ["mariadb", "members_pg"])
def test_a_skewed_member_server_runs_on_its_clock_off_by_the_offset_then_right_again(
        harness, server):
    """The clock skew reaches the server itself (libfaketime in its processes): NOW() in a
    new session and in one already open, and a row the server stamps (Koha's `timestamp ...
    ON UPDATE CURRENT_TIMESTAMP`, Polaris's ModificationDate default), are the offset off the
    real time; put right, they are right again."""
    s = harness.servers[server]
    name = f"chaos_skew_{uuid.uuid4().hex[:8]}"
    engine = create_engine(s.create_database(name))
    stamped = ("ts TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP"
               if server == "mariadb" else "ts TIMESTAMP NOT NULL DEFAULT LOCALTIMESTAMP")
    now = "NOW()" if server == "mariadb" else "LOCALTIMESTAMP"
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE stamped (id INT PRIMARY KEY, {stamped})"))
        with engine.connect() as open_before:
            for offset in (-600, 420, 0):
                s.skew(offset)
                assert abs(s.clock_offset() - offset) < 3
                with engine.begin() as conn:
                    conn.execute(text("INSERT INTO stamped (id) VALUES (:i)"), {"i": offset})
                    ts = conn.execute(text("SELECT ts FROM stamped WHERE id = :i"),
                                      {"i": offset}).scalar_one()
                assert abs((ts - datetime.now()).total_seconds() - offset) < 3
                seen = open_before.execute(text(f"SELECT {now}")).scalar_one()
                open_before.rollback()  # PostgreSQL's LOCALTIMESTAMP: the transaction's start
                assert abs((seen - datetime.now()).total_seconds() - offset) < 3
    finally:
        s.skew(0)
        engine.dispose()
        admin = create_engine(s.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()
    assert abs(s.clock_offset()) < 3


@pytest.fixture
def consortium(harness, tmp_path):
    c = consortia.build(tmp_path, harness.servers, seed=5, tag=uuid.uuid4().hex[:8])
    yield c
    consortia.drop(c, harness.servers)


def _store(harness, c):
    return create_engine(harness.servers["central"].url(c.central))


def _lend_and_return_elsewhere(c, lender: str, returned_at: str) -> tuple[str, int]:
    world = c.world
    barcode = f"{lender}0000001"
    world.checkout(barcode, lender, next(p for p in world.people if p.home == lender))
    issue = world.books[barcode].loan[1]
    world.checkin(barcode, returned_at)
    return barcode, issue


def test_the_oracle_agrees_with_a_hub_left_to_do_its_work(harness, consortium):
    _lend_and_return_elsewhere(consortium, KOHA, POLARIS)
    sync_cycle(consortium.config)
    sync_cycle(consortium.config)  # the close read back
    assert check(consortium.world, _store(harness, consortium), DEMO_ID_KEY) == []


def test_the_oracle_finds_a_write_back_dropped(harness, consortium):
    """A close acknowledged in the outbox but never written to the lender: the lender's ILS
    still shows the loan open, and the oracle says so."""
    c = consortium
    _, issue = _lend_and_return_elsewhere(c, KOHA, POLARIS)
    config = c.config
    config.write_text(config.read_text().replace(f'code = "{KOHA}"\n',
                                                 f'code = "{KOHA}"\nwriteback = false\n'))
    open_runtime.cache_clear()
    sync_cycle(config)
    store = _store(harness, c)
    with store.begin() as conn:  # the drop: acknowledged, never applied
        dropped = conn.execute(update(outbox).where(
            outbox.c.target == KOHA, outbox.c.kind == "close_loan",
            outbox.c.status == "pending").values(status="applied")).rowcount
    assert dropped == 1
    config.write_text(config.read_text().replace("writeback = false\n", ""))
    open_runtime.cache_clear()
    sync_cycle(config)

    findings = [str(f) for f in check(c.world, store, DEMO_ID_KEY)]

    assert f"owner: loan {KOHA}/{issue} ({KOHA}0000001) at its lender: open=True, truth " \
           "returned at" in " ".join(findings)


def test_the_oracle_finds_a_write_back_applied_twice(harness, consortium):
    """The lender's check-in written a second time (what a replay without Polaris's
    `insert_missing` guard would do): the loan is recorded returned twice."""
    c = consortium
    _, issue = _lend_and_return_elsewhere(c, POLARIS, KOHA)
    sync_cycle(c.config)
    assert check(c.world, _store(harness, c), DEMO_ID_KEY) == []
    with c.world.desks[POLARIS].engine.begin() as conn:
        [written] = conn.execute(select(headers).where(
            headers.c.TransactionTypeID == CHECKIN)).mappings().all()
        again = {k: v for k, v in written.items() if k != "TransactionID"}
        conn.execute(insert(headers).values(**again))

    findings = [str(f) for f in check(c.world, _store(harness, c), DEMO_ID_KEY)]

    assert findings == [f"doubled: loan {POLARIS}/{issue} ({POLARIS}0000001) at its lender: "
                        "2 records of it"]


def test_the_oracle_finds_a_replay_that_rewrote_the_return(harness, consortium):
    """Evergreen's close applied again with another time (its `checkin_time IS NULL` guard
    gone): the lender shows a return the truth never had."""
    c = consortium
    _, issue = _lend_and_return_elsewhere(c, EVERGREEN, KOHA)
    sync_cycle(c.config)
    with c.world.desks[EVERGREEN].engine.begin() as conn:
        conn.execute(text("UPDATE action.circulation SET checkin_time = checkin_time + "
                          ":later WHERE id = :id"), {"later": timedelta(minutes=5), "id": issue})

    findings = [str(f) for f in check(c.world, _store(harness, c), DEMO_ID_KEY)]

    assert any(f.startswith(f"owner: loan {EVERGREEN}/{issue} ") and "returned at" in f
               for f in findings), findings


def _echo_server():
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(
                lambda: c.recv(1024), b"")], daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_a_link_passes_slows_partitions_and_refuses_as_it_is_told():
    """The relay between the hub and a member: what a partition and a refusal look like to a
    client (a hang; a reset or a closed connection), and that it passes bytes again after."""
    listener = _echo_server()
    link = Link(listener.getsockname()[1], delay=0.3)
    try:
        client = socket.create_connection(("127.0.0.1", link.port), timeout=2)
        client.sendall(b"one")
        assert client.recv(16) == b"one"
        link.set("slow")
        started = time.monotonic()
        client.sendall(b"two")
        assert client.recv(16) == b"two" and time.monotonic() - started >= 0.6  # both ways
        link.set("partition")
        client.settimeout(0.5)
        client.sendall(b"three")
        with pytest.raises(socket.timeout):
            client.recv(16)
        link.set("up")
        client.settimeout(2)
        assert client.recv(16) == b"three"  # held, not lost, as TCP retransmits
        link.set("refuse")
        with contextlib.suppress(ConnectionResetError):  # the connection ends: closed, or reset
            assert client.recv(16) == b""
        fresh = socket.create_connection(("127.0.0.1", link.port), timeout=2)
        assert fresh.recv(16) == b""  # accepted and closed at once
        link.set("up")
        again = socket.create_connection(("127.0.0.1", link.port), timeout=2)
        again.sendall(b"four")
        assert again.recv(16) == b"four"
    finally:
        link.close()
        listener.close()

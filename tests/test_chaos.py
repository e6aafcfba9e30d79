"""The fault campaign's harness (chaos/, `make chaos`), kept working by `make test`: a small
campaign of randomized fault schedules ends with nothing lost, doubled or wrong, and the
oracle is seen catching what it claims to catch (a write-back dropped, one applied twice).

The harness starts its own PostgreSQL and MariaDB instances (own data directories and ports,
killed and restarted by the schedules) and its own Prefect server.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from helpers import sync_cycle
from sqlalchemy import create_engine, insert, select, text, update

from chaos import consortium as consortia
from chaos.campaign import Campaign
from chaos.harness import Harness
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
        result = harness.run(draw(CAMPAIGN_SEED, index))
        campaign.add(result)
        assert result.ok, campaign.line(result)
    assert campaign.faults(), "the schedules injected no fault"


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

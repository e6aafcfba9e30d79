"""What the merge keeps of a loan: its renewals as the desk counted them, and a loan held in
quarantine released once the desk has fixed it, even when nothing else of the member is held.
Koha members on MariaDB, the central store on PostgreSQL: the servers the consortium runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from circhub.connections.runtime import open_runtime
from circhub.domain.schema import circulation_events, loans, quarantine
from circhub.simulator import koha
from circhub.tasks.sync.cycle import run_cycle
from tests.helpers import koha_consortium, sync_cycle
from tests.writeback import dispose


@pytest.fixture
def lent(tmp_path, mariadb_db, pg_db):
    """Two Koha members, one book lent at the first: the world, config, member, book, loan."""
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db())
    code = list(world.desks)[0]
    barcode = f"{code}0000001"
    world.checkout(barcode, code, next(p for p in world.people if p.home == code))
    yield world, config, code, barcode, world.books[barcode].loan[1]
    dispose(world, config)


def _loan(rt, code: str, issue: int):
    with rt.store.connect() as conn:
        return conn.execute(select(loans).where(loans.c.member == code,
                                                loans.c.local_id == str(issue))).first()


def test_a_renewal_at_the_desk_is_counted_in_the_central_store(lent):
    world, config, code, barcode, issue = lent
    sync_cycle(config)
    world.renew(barcode)

    rt = sync_cycle(config)

    assert _loan(rt, code, issue).renewals == 1


def test_a_loan_lent_renewed_and_returned_at_the_desk_is_three_events_in_the_central_store(
        lent):
    world, config, code, barcode, issue = lent
    sync_cycle(config)
    world.renew(barcode)
    world.checkin(barcode, code)

    rt = sync_cycle(config)

    with rt.store.connect() as conn:
        kinds = conn.execute(select(circulation_events.c.kind).where(
            circulation_events.c.loan_local_id == str(issue),
            circulation_events.c.loan_member == code).order_by(circulation_events.c.at,
                                                              circulation_events.c.id)).scalars()
        assert list(kinds) == ["issued", "renewed", "returned"]


def test_a_loan_fixed_at_the_desk_is_released_though_nothing_else_is_held(lent):
    world, config, code, _, issue = lent
    row = koha.issues.c.issue_id == issue
    with world.desks[code].engine.begin() as conn:  # due before it was issued
        issued = conn.execute(select(koha.issues.c.issuedate).where(row)).scalar_one()
        conn.execute(update(koha.issues).where(row).values(date_due=issued - timedelta(days=1)))
    rt = sync_cycle(config)
    assert _loan(rt, code, issue) is None
    world.checkout(f"{code}0000002", code, next(p for p in world.people if p.home == code))
    assert _released(config, code) == 0  # a good loan beside the held one releases nothing
    with world.desks[code].engine.begin() as conn:  # fixed, stamped past the watermark
        stamped = conn.execute(select(koha.issues.c.timestamp).where(row)).scalar_one()
        conn.execute(update(koha.issues).where(row).values(
            date_due=issued + timedelta(days=30), timestamp=stamped + timedelta(seconds=1)))

    assert _released(config, code) == 1  # what the sync's record tells the operator

    rt = open_runtime(str(config))
    assert _loan(rt, code, issue) is not None
    with rt.store.connect() as conn:
        held = conn.execute(select(quarantine.c.row_key).where(
            quarantine.c.released_at.is_(None))).scalars().all()
    assert held == []


def _released(config, code: str) -> int:
    """One cycle of every member; how many quarantined rows `code`'s sync released."""
    rt = open_runtime(str(config))
    outcomes = run_cycle(rt, [m.code for m in rt.consortium.members])
    return outcomes[code].counts()["released"]

"""The core guarantees, each by a test that fails when the guarantee breaks (issue 22).

Every test here was checked by planting the bug it names and watching it fail
(docs/reliability.md lists which test caught which bug):

- the lookback: a row committed late, with a cursor value behind the watermark but inside the
  lookback, is found by the very next sync (no reconcile in between);
- the watermark never moves backwards: a stale extract merged after a newer sync leaves it
  where it is (the SQL guard), and a sync that read nothing past it does not even propose to
  write it (the check in code, seen by a trigger planted in the store);
- one transaction per member's merge: a failure at any step inside it stores no loan, event,
  outbox command or watermark of that merge, and the next run stores them all;
- a write-back replayed with values other than what the desk recorded leaves the desk's
  values (Evergreen's `checkin_time IS NULL` guard and its peers in the other profiles).

Times that matter are chosen by the test (item cursors stamped relative to the watermark the
store holds), never raced against the wall clock.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select, text, update

from circhub.connections.engines import engine_for
from circhub.connections.holds import holding
from circhub.connections.profile import load_profile
from circhub.domain.schema import (
    loans,
    member_items,
    metadata,
    outbox,
    reader_accounts,
    watermarks,
)
from circhub.simulator import koha
from circhub.simulator.evergreen import EvergreenDesk
from circhub.simulator.koha import KohaDesk
from circhub.simulator.polaris import PolarisDesk
from circhub.simulator.world import make_id_number
from circhub.tasks.sync import merge
from circhub.tasks.sync.cycle import MERGE, run_cycle
from circhub.tasks.sync.extract import extract_member
from circhub.tasks.sync.merge import merge_batch
from circhub.tasks.sync.validate import validate_extract
from circhub.tasks.writeback.push import apply_command
from tests.helpers import add_koha_items, koha_consortium, sync_cycle
from tests.member_databases import make_runtime, member_database


def _mark(rt, member: str, entity: str) -> datetime | None:
    with rt.store.connect() as conn:
        return conn.execute(select(watermarks.c.cursor_value).where(
            watermarks.c.member == member, watermarks.c.entity == entity)).scalar()


def _item_number(desk, barcode: str) -> str:
    with desk.engine.connect() as conn:
        return str(conn.execute(select(koha.items.c.itemnumber).where(
            koha.items.c.barcode == barcode)).scalar_one())


def _barcodes(rt, member: str) -> set[str]:
    with rt.store.connect() as conn:
        return set(conn.execute(select(member_items.c.barcode).where(
            member_items.c.member == member)).scalars())


def _one_member(tmp_path, mariadb_db, pg_db):
    """One Koha member on MariaDB, a PostgreSQL store, synced once: (world, config, rt, code)."""
    world, config = koha_consortium(tmp_path, [mariadb_db()], pg_db(), readers=2, items=3)
    rt = sync_cycle(config)
    return world, config, rt, next(iter(world.desks))


# -- the lookback -------------------------------------------------------------------------------
def test_a_late_commit_inside_the_lookback_is_found_by_the_next_sync(tmp_path, mariadb_db, pg_db):
    world, config, rt, code = _one_member(tmp_path, mariadb_db, pg_db)
    mark = _mark(rt, code, "items")
    lookback = timedelta(seconds=rt.consortium.lookback_seconds)
    # A transaction that stamped its row a minute before the last sync read, and committed
    # after it: its cursor is behind the watermark, inside the lookback.
    late = mark - min(timedelta(seconds=60), lookback / 2)
    add_koha_items(world.desks[code], code, [late], first=100)

    rt = sync_cycle(config)

    assert f"{code}0000100" in _barcodes(rt, code)
    assert _mark(rt, code, "items") == mark  # found without moving the watermark back


def test_each_member_reads_from_its_own_watermark(tmp_path, mariadb_db, pg_db):
    """Two members, each without a watermark the other has: the first code in sort order has
    no items yet, the last no readers. Rows they then get, stamped hours ago, are read in
    full: a member that took the other's watermark (a member comparison that leaks, either
    way) would start at it and miss them, whatever order the store returns its rows in."""
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db(),
                                    readers=2, items=2)
    first, last = sorted(world.desks)
    with world.desks[first].engine.begin() as conn:
        conn.execute(delete(koha.items))
    with world.desks[last].engine.begin() as conn:
        conn.execute(delete(koha.borrowers))
    rt = sync_cycle(config)
    assert _mark(rt, first, "items") is None and _mark(rt, last, "readers") is None
    # An entity that read nothing moves no watermark, and holds back none of the others.
    assert _mark(rt, first, "readers") is not None and _mark(rt, last, "items") is not None
    hours_ago = datetime.now().replace(microsecond=0) - timedelta(hours=3)
    add_koha_items(world.desks[first], first, [hours_ago], first=100)
    (reader,) = world.desks[last].add_readers([world._reader_row(world._person(last))])
    with world.desks[last].engine.begin() as conn:
        conn.execute(update(koha.borrowers).where(koha.borrowers.c.borrowernumber == reader)
                     .values(updated_on=hours_ago))

    rt = sync_cycle(config)

    assert f"{first}0000100" in _barcodes(rt, first)
    with rt.store.connect() as conn:
        accounts = conn.execute(select(reader_accounts.c.local_id).where(
            reader_accounts.c.member == last)).scalars().all()
    assert accounts == [str(reader)]


# -- the watermark never moves backwards --------------------------------------------------------
def test_a_stale_extract_merged_after_a_newer_sync_leaves_the_watermark_where_it_is(
        tmp_path, mariadb_db, pg_db):
    """Run 1 extracts and stalls; run 2 reads further and merges; run 1's merge resumes.
    Run 1 read past the mark it started from, so only the SQL guard (the store's current
    watermark against run 1's newest cursor) can stop it."""
    world, config, rt, code = _one_member(tmp_path, mariadb_db, pg_db)
    member, desk = rt.consortium.member(code), world.desks[code]
    mark = _mark(rt, code, "items")
    add_koha_items(desk, code, [mark + timedelta(seconds=1)], first=100)
    with holding(code):
        stale = extract_member(rt.consortium, member, rt.store, rt.id_key)
    add_koha_items(desk, code, [mark + timedelta(seconds=2)], first=101)
    rt = sync_cycle(config)
    assert _mark(rt, code, "items") == mark + timedelta(seconds=2)

    checked = validate_extract(code, stale.frames, rt.member_view(member))
    merge_batch(rt.store, rt.consortium, member, stale, checked)

    assert _mark(rt, code, "items") == mark + timedelta(seconds=2)
    assert {f"{code}0000100", f"{code}0000101"} <= _barcodes(rt, code)


REFUSE_BACKWARD_MARKS = """
CREATE FUNCTION refuse_backward_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM watermarks w WHERE w.member = NEW.member
             AND w.entity = NEW.entity AND w.cursor_value >= NEW.cursor_value) THEN
    RAISE EXCEPTION 'planted guard: % % watermark proposed at %, not past where it is',
      NEW.member, NEW.entity, NEW.cursor_value;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_backward_mark BEFORE INSERT ON watermarks
  FOR EACH ROW EXECUTE FUNCTION refuse_backward_mark();
"""


def test_a_sync_that_reads_nothing_past_the_watermark_never_proposes_to_write_it(
        tmp_path, mariadb_db, pg_db):
    """The check in code: a batch whose newest cursor is not past the mark it was read from
    sends no watermark statement at all. A BEFORE INSERT trigger sees every proposal (an
    INSERT .. ON CONFLICT fires it even when the conflict's WHERE would then refuse)."""
    world, config, rt, code = _one_member(tmp_path, mariadb_db, pg_db)
    marks = {e: _mark(rt, code, e) for e in ("readers", "items", "loans")}
    desk = world.desks[code]
    # Items: the rows at the mark deleted at the source, one committed late behind it: the
    # newest item read is older than the mark (readers, loans: the same rows again).
    with desk.engine.begin() as conn:
        conn.execute(delete(koha.items).where(koha.items.c.timestamp >= marks["items"]))
    add_koha_items(desk, code, [marks["items"] - timedelta(seconds=60)], first=100)
    with rt.store.begin() as conn:
        conn.execute(text(REFUSE_BACKWARD_MARKS))

    rt = sync_cycle(config)  # re-reads the lookback: rows at or behind each mark only

    assert {e: _mark(rt, code, e) for e in marks} == marks
    assert f"{code}0000100" in _barcodes(rt, code)


# -- one transaction per member's merge ---------------------------------------------------------
def _stored(rt) -> dict[str, list[str]]:
    """Every central row but the run bookkeeping, as text, table by table."""
    found = {}
    with rt.store.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in ("sync_runs", "schema_migrations"):
                continue
            found[table.name] = sorted(repr(tuple(r)) for r in conn.execute(select(table)))
    return found


def _cross_return_and_a_new_loan(tmp_path, mariadb_db, pg_db):
    """A's book lent at A and synced; then returned at B, and a loan made at B. B's next merge
    owes a loan, events (issued, seen), a close_loan command to A and B's watermarks."""
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db(),
                                    readers=2, items=2)
    a, b = list(world.desks)
    world.checkout(f"{a}0000001", a, next(p for p in world.people if p.home == a))
    rt = sync_cycle(config)
    world.checkin(f"{a}0000001", b)
    world.checkout(f"{b}0000001", b, next(p for p in world.people if p.home == b))
    return rt, a, b


def _assert_the_merge_stores_it_all(rt, a: str, b: str) -> None:
    """The same member's next run, with nothing failing, stores what the failed one owed."""
    outcome = run_cycle(rt, [b], push=False)[b]
    assert outcome.ok, outcome.error()
    with rt.store.connect() as conn:
        assert conn.execute(select(loans.c.local_id).where(loans.c.member == b)).all()
        kinds = conn.execute(select(outbox.c.kind).where(outbox.c.target == a)).scalars().all()
    assert "close_loan" in kinds


# Every step of merge_batch, as merge.py names it (the generic mirror merge runs only for a
# declared optional entity, which the Koha profile does not map).
MERGE_STEPS = ["claim_key", "_quarantine", "_merge_readers", "_merge_items", "_merge_loans",
               "_sightings", "record_claims", "refresh_items", "_advance_marks"]


@pytest.mark.parametrize("step", MERGE_STEPS)
def test_a_failure_after_any_step_of_a_merge_stores_nothing_of_that_merge(
        step, tmp_path, mariadb_db, pg_db, monkeypatch):
    rt, a, b = _cross_return_and_a_new_loan(tmp_path, mariadb_db, pg_db)
    before = _stored(rt)
    real, ran = getattr(merge, step), []

    def step_then_fail(*args, **kwargs):
        real(*args, **kwargs)  # the step's own writes happen, inside the transaction
        ran.append(step)
        raise RuntimeError(f"injected failure after {step}")

    monkeypatch.setattr(merge, step, step_then_fail)
    outcome = run_cycle(rt, [b], push=False)[b]

    assert ran == [step]
    assert outcome.failure is not None and outcome.failure.stage == MERGE
    assert _stored(rt) == before
    monkeypatch.undo()
    _assert_the_merge_stores_it_all(rt, a, b)


REFUSE_WRITES = """
CREATE FUNCTION refuse_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'planted failure: % refuses a write', TG_TABLE_NAME; END $$;
CREATE TRIGGER refuse_write BEFORE INSERT OR UPDATE ON {table}
  FOR EACH ROW EXECUTE FUNCTION refuse_write();
"""


@pytest.mark.parametrize("table", ["loans", "circulation_events", "outbox", "watermarks"])
def test_a_store_that_refuses_one_table_mid_merge_keeps_none_of_that_merge(
        table, tmp_path, mariadb_db, pg_db):
    """The same, with the failure raised by PostgreSQL itself (a planted trigger)."""
    rt, a, b = _cross_return_and_a_new_loan(tmp_path, mariadb_db, pg_db)
    before = _stored(rt)
    with rt.store.begin() as conn:
        conn.execute(text(REFUSE_WRITES.format(table=table)))

    outcome = run_cycle(rt, [b], push=False)[b]

    assert outcome.failure is not None and "planted failure" in outcome.failure.cause
    assert _stored(rt) == before
    with rt.store.begin() as conn:
        conn.execute(text(f"DROP TRIGGER refuse_write ON {table}"))
    _assert_the_merge_stores_it_all(rt, a, b)


# -- a write-back replayed with other values ---------------------------------------------------
HERE, THERE = "AA001", "BB001"
T0 = datetime(2026, 10, 1, 9, 0)

DESKS = {"koha": ("mariadb", KohaDesk), "evergreen": ("postgresql", EvergreenDesk),
         "polaris": ("odbc", PolarisDesk)}


def _desk_with_an_open_loan(request, profile: str, pg_db):
    server, desk_class = DESKS[profile]
    url = member_database(request, server)
    desk = desk_class(engine_for(url), HERE)
    desk.create_schema({HERE: "Alpha Library", THERE: "Beta Library"})
    (reader,) = desk.add_readers([{
        "cardnumber": make_id_number(random.Random(5), "Chengdu")[0], "surname": "Li",
        "firstname": "Reader", "dateofbirth": None, "sex": "F", "dateenrolled": None}])
    desk.add_items([f"{HERE}0000001"], T0)
    loan = desk.checkout(f"{HERE}0000001", reader, T0 + timedelta(minutes=5),
                         T0 + timedelta(days=28))
    rt = make_runtime(pg_db(), [
        {"code": HERE, "name": "Alpha", "profile": profile, "connection": url},
        {"code": THERE, "name": "Beta", "profile": "koha", "connection": "sqlite://",
         "sync": False}])
    return desk, loan, rt.consortium.member(HERE)


def _close_loan(loan: int, returned_at: str, at: str) -> dict:
    return {"barcode": f"{HERE}0000001", "holder": at, "due_at": None, "state_at": returned_at,
            "loan_local_id": str(loan), "returned_at": returned_at, "return_member": at}


@pytest.mark.parametrize("profile", list(DESKS))
def test_a_close_loan_for_a_loan_the_desk_closed_leaves_the_desks_return(
        profile, request, pg_db):
    desk, loan, member = _desk_with_an_open_loan(request, profile, pg_db)
    desk.checkin(f"{HERE}0000001", T0 + timedelta(minutes=30))  # returned at its own desk
    recorded = desk.loan_view(loan)
    assert recorded["returned_at"] == T0 + timedelta(minutes=30)

    apply_command(desk.engine, load_profile(profile), member, "close_loan",
                  _close_loan(loan, "2026-10-02 10:00:00", THERE))

    assert desk.loan_view(loan) == recorded


@pytest.mark.parametrize("profile", list(DESKS))
def test_a_close_loan_replayed_with_other_values_leaves_the_first_return(
        profile, request, pg_db):
    desk, loan, member = _desk_with_an_open_loan(request, profile, pg_db)
    apply_command(desk.engine, load_profile(profile), member, "close_loan",
                  _close_loan(loan, "2026-10-02 10:00:00", THERE))
    recorded = desk.loan_view(loan)
    assert recorded["returned_at"] == datetime(2026, 10, 2, 10, 0)

    apply_command(desk.engine, load_profile(profile), member, "close_loan",
                  _close_loan(loan, "2026-10-03 16:00:00", HERE))

    assert desk.loan_view(loan) == recorded

"""The contract every ILS profile keeps, on its real database kind.

A new profile gets all of these by adding one ProfileCase to CASES: the profile name, the
server its ILS runs on (tests/member_databases.py) and the simulator desk that writes to it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import pytest
from member_databases import make_runtime, member_database

from circhub.connections.engines import engine_for
from circhub.connections.live_schema import schema_problems
from circhub.connections.profile import load_profile
from circhub.connections.sql import extract_query
from circhub.domain.records import entities
from circhub.simulator.evergreen import EvergreenDesk
from circhub.simulator.koha import Koha2311Desk, KohaDesk
from circhub.simulator.openbiblio import OpenBiblioDesk
from circhub.simulator.polaris import PolarisDesk
from circhub.simulator.world import make_id_number
from circhub.tasks.sync.cycle import sync_member
from circhub.tasks.sync.extract import read_entity
from circhub.tasks.writeback.push import apply_command

HERE, THERE = "AA001", "BB001"  # the member under test, and another member of the consortium
T0 = datetime(2026, 10, 1, 9, 0)
DUE = T0 + timedelta(days=28)


@dataclass(frozen=True)
class ProfileCase:
    profile: str
    server: str  # postgresql | odbc | mariadb
    desk: type

    def __str__(self) -> str:
        return self.profile


CASES = [
    ProfileCase("koha", "mariadb", KohaDesk),
    ProfileCase("koha_2311", "mariadb", Koha2311Desk),  # Koha without checkin_library
    ProfileCase("evergreen", "postgresql", EvergreenDesk),
    ProfileCase("polaris", "odbc", PolarisDesk),
    ProfileCase("openbiblio", "mariadb", OpenBiblioDesk),
]


def constants_of(desk) -> dict:
    """The constants a desk's member config gives its profile (KohaDesk is no Desk: none)."""
    return getattr(desk, "member_constants", dict)()


@dataclass
class Member:
    """One seeded member ILS: two readers, three books, one loan open and one returned."""

    case: ProfileCase
    url: str
    desk: object
    open_loan: int

    @property
    def engine(self):
        return engine_for(self.url)

    @property
    def profile(self):
        return load_profile(self.case.profile)

    def query(self, entity: str, since=None):
        return extract_query(self.profile.entities[entity], since,
                             constants=constants_of(self.desk))

    def extract(self, entity: str) -> pd.DataFrame:
        return read_entity(self.engine, self.query(entity), entity)


@pytest.fixture(params=CASES, ids=str)
def member(request):
    case: ProfileCase = request.param
    url = member_database(request, case.server)
    desk = case.desk(engine_for(url), HERE)
    desk.create_schema({HERE: "Alpha Library", THERE: "Beta Library"})
    rng = random.Random(3)
    readers = desk.add_readers([
        {"cardnumber": make_id_number(rng, "Chengdu")[0], "surname": "Li",
         "firstname": "Reader", "dateofbirth": None, "sex": "F", "dateenrolled": None}
        for _ in range(2)
    ])
    desk.add_items([f"{HERE}000000{n}" for n in (1, 2, 3)], T0)
    open_loan = desk.checkout(f"{HERE}0000001", readers[0], T0 + timedelta(minutes=5), DUE)
    desk.checkout(f"{HERE}0000002", readers[1], T0 + timedelta(minutes=6), DUE)
    desk.checkin(f"{HERE}0000002", T0 + timedelta(minutes=30))
    return Member(case, url, desk, open_loan)


@pytest.fixture
def runtime(member, pg_db):
    return make_runtime(pg_db(), [
        {"code": HERE, "name": "Alpha", "profile": member.case.profile, "connection": member.url,
         "constants": constants_of(member.desk)},
        {"code": THERE, "name": "Beta", "profile": "koha", "connection": "sqlite://",
         "sync": False},
    ])


def test_every_mapped_table_and_column_exists_in_the_live_schema(member):
    assert schema_problems(member.profile, member.engine) == []


@pytest.mark.parametrize("entity", entities())
def test_primary_keys_are_unique_and_not_null(member, entity):
    frame = member.extract(entity)
    assert len(frame) > 0
    assert frame["local_id"].notna().all()
    assert frame["local_id"].astype(str).is_unique


@pytest.mark.parametrize("entity", entities())
def test_rows_come_in_cursor_order_and_the_cursor_window_cuts_there(member, entity):
    frame = member.extract(entity)
    cursor = pd.to_datetime(frame["updated_at"], utc=True)
    assert cursor.is_monotonic_increasing
    mark = frame["updated_at"].iloc[len(frame) // 2]
    since = member.query(entity, since=mark)
    later = read_entity(member.engine, since, entity)
    assert sorted(later["local_id"].astype(str)) == sorted(
        frame.loc[cursor >= cursor.iloc[len(frame) // 2], "local_id"].astype(str))


def test_a_second_extraction_from_the_watermark_yields_no_changed_rows(member, runtime):
    first = sync_member(runtime, runtime.consortium.member(HERE))
    assert first.validated.bad == []
    assert all(n > 0 for n in first.merged.merged.values())
    second = sync_member(runtime, runtime.consortium.member(HERE))
    assert second.merged.merged == {"readers": 0, "items": 0, "loans": 0}
    assert second.merged.events == 0


def _close_loan(member: Member) -> dict:
    return {"barcode": f"{HERE}0000001", "holder": THERE, "due_at": None,
            "state_at": "2026-10-02 10:00:00", "loan_local_id": str(member.open_loan),
            "returned_at": "2026-10-02 10:00:00", "return_member": THERE}


def test_close_loan_write_back_is_seen_by_the_next_extraction(member, runtime):
    here = runtime.consortium.member(HERE)
    sync_member(runtime, here)
    apply_command(member.engine, member.profile, here, "close_loan", _close_loan(member))
    after = sync_member(runtime, here)
    loans = after.extract.frames["loans"].set_index("local_id")
    loans.index = loans.index.astype(str)
    returned = loans.loc[str(member.open_loan)]
    assert returned["returned_at"] == datetime(2026, 10, 2, 10, 0)
    if "return_branch" in _mapped(member, "loans"):
        assert returned["return_branch"] == THERE
    item = after.extract.frames["items"].set_index("barcode").loc[f"{HERE}0000001"]
    assert item["holding_branch"] == THERE
    assert pd.isna(item["on_loan_due"])


def test_replaying_close_loan_changes_nothing(member, runtime):
    here = runtime.consortium.member(HERE)
    apply_command(member.engine, member.profile, here, "close_loan", _close_loan(member))
    before = {e: member.extract(e).drop(columns="updated_at") for e in entities()}
    apply_command(member.engine, member.profile, here, "close_loan", _close_loan(member))
    for entity in entities():
        after = member.extract(entity).drop(columns="updated_at")
        pd.testing.assert_frame_equal(
            after.sort_values("local_id", ignore_index=True),
            before[entity].sort_values("local_id", ignore_index=True), check_like=True)


def test_set_item_write_back_is_seen_by_the_next_extraction(member, runtime):
    here = runtime.consortium.member(HERE)
    sync_member(runtime, here)
    payload = {"barcode": f"{HERE}0000003", "holder": THERE, "due_at": "2026-11-01 00:00:00",
               "state_at": "2026-10-02 10:00:00"}
    apply_command(member.engine, member.profile, here, "set_item", payload)
    after = sync_member(runtime, here)
    item = after.extract.frames["items"].set_index("barcode").loc[f"{HERE}0000003"]
    assert item["holding_branch"] == THERE


def _mapped(member: Member, entity: str) -> set[str]:
    return {f for s in member.profile.entities[entity].sources for f in s.columns}


# Read what you write: every state a profile's write-back can put an item in, read back by the
# same profile as the same canonical state (holder; on loan or not, and the due day).
WRITTEN_STATES = {
    "held-away": ("set_item", THERE, None),
    "lent-away": ("set_item", THERE, "2026-11-02 18:30:00"),
    "back-home": ("set_item", HERE, None),
    "returned-away": ("close_loan", THERE, None),
    "returned-and-lent-away": ("close_loan", THERE, "2026-11-03 12:00:00"),
}
# A due day lives on a loan in every kind, so a book lent at another member is a loan to the
# owner's consortium stand-in patron (Koha's issue, Evergreen's circulation, Polaris's
# ItemCheckouts row, OpenBiblio's booking), with that due day.


@pytest.mark.parametrize("state", list(WRITTEN_STATES))
def test_each_state_the_write_back_writes_reads_back_the_same(member, state):
    kind, holder, due = WRITTEN_STATES[state]
    here = _member_config(member)
    barcode = f"{HERE}000000{1 if kind == 'close_loan' else 3}"
    payload = {"barcode": barcode, "holder": holder, "due_at": due,
               "state_at": "2026-10-02 10:00:00"}
    if kind == "close_loan":
        payload.update(_close_loan(member), holder=holder, due_at=due)
    apply_command(member.engine, member.profile, here, kind, payload)
    item = member.extract("items").set_index("barcode").loc[barcode]
    read_due = None if pd.isna(item["on_loan_due"]) else pd.Timestamp(item["on_loan_due"]).date()
    assert (item["holding_branch"], read_due) == (
        holder, datetime.fromisoformat(due).date() if due else None)


def _member_config(member: Member):
    from circhub.connections.members import Member as MemberConfig

    return MemberConfig.model_validate({
        "code": HERE, "name": "Alpha", "profile": member.case.profile,
        "connection": member.url, "constants": constants_of(member.desk)})

"""Write steps that verify themselves (issue 21): a look-up that finds nothing, or a step that
finds no row or too many, stops the command and its transaction writes nothing; a time sent to
a whole-second column finds the row the desk wrote. Real MariaDB (Koha) and PostgreSQL
(Evergreen)."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta

import pytest

from circhub.connections.engines import engine_for
from circhub.connections.members import Member
from circhub.connections.profile import PROFILE_DIR, load_profile, parse_profile
from circhub.simulator.evergreen import EvergreenDesk
from circhub.simulator.koha import KohaDesk
from circhub.tasks.writeback.push import apply_command
from circhub.tasks.writeback.steps import StepFailed

HERE, THERE, NOWHERE = "AA001", "BB001", "ZZ001"
T0 = datetime(2026, 10, 1, 9, 0)
BOOK = f"{HERE}0000001"


def _seed(desk) -> int:
    desk.create_schema({HERE: "Alpha Library", THERE: "Beta Library"})
    [reader] = desk.add_readers([{"cardnumber": "510104199001011234", "surname": "Li",
                                  "firstname": "Reader", "dateofbirth": None, "sex": "F",
                                  "dateenrolled": None}])
    desk.add_items([BOOK, f"{HERE}0000002", f"{HERE}0000003"], T0)
    # The desk's clock has microseconds; the ILS keeps what its columns keep.
    return desk.checkout(BOOK, reader, T0 + timedelta(minutes=5, microseconds=654321),
                         T0 + timedelta(days=28))


def _member(profile: str, url: str) -> Member:
    return Member.model_validate({"code": HERE, "name": "Alpha", "profile": profile,
                                  "connection": url})


@pytest.fixture
def koha(mariadb_db):
    url = mariadb_db()
    desk = KohaDesk(engine_for(url), HERE)
    return desk, _member("koha", url), _seed(desk)


@pytest.fixture
def evergreen(pg_db):
    url = pg_db()
    desk = EvergreenDesk(engine_for(url), HERE)
    return desk, _member("evergreen", url), _seed(desk)


def _close_loan(loan: int, holder: str) -> dict:
    return {"barcode": BOOK, "holder": holder, "due_at": None,
            "state_at": "2026-10-02 10:00:00", "loan_local_id": str(loan),
            "returned_at": "2026-10-02 10:00:00", "return_member": THERE}


def test_a_lookup_that_finds_nothing_fails_the_command_names_it_and_writes_nothing(evergreen):
    desk, member, loan = evergreen
    before = desk.item_view(BOOK)
    # The holder is no org unit of this Evergreen: step 2 cannot find circ_lib's id. Step 1
    # (the circulation's check-in) ran first, and must not stay.
    with pytest.raises(StepFailed) as failed:
        apply_command(desk.engine, load_profile("evergreen"), member, "close_loan",
                      _close_loan(loan, NOWHERE))
    assert str(failed.value) == (
        "profile 'evergreen' write-back 'close_loan' step 2 (update asset.copy): "
        f"look-up 'holder_org' found nothing in actor.org_unit where shortname = '{NOWHERE}'")
    assert desk.loan_view(loan)["open"] is True
    assert desk.item_view(BOOK) == before


def test_a_step_matching_no_row_fails_the_command(koha):
    desk, member, _ = koha
    payload = {"barcode": f"{HERE}0009999", "holder": THERE, "due_at": None,
               "state_at": "2026-10-02 10:00:00"}
    with pytest.raises(StepFailed, match=r"'set_item' step 1 \(update items\): no row in items "
                                         rf"where barcode = '{HERE}0009999'"):
        apply_command(desk.engine, load_profile("koha"), member, "set_item", payload)


def test_a_step_matching_more_rows_than_it_should_fails_and_writes_nothing(koha):
    desk, member, _ = koha
    data = _koha_with(set_item=[{
        "op": "update", "table": "items", "where": {"itype": "BK"},
        "set": {"holdingbranch": ":holder_branch"}}])
    payload = {"barcode": BOOK, "holder": THERE, "due_at": None,
               "state_at": "2026-10-02 10:00:00"}
    with pytest.raises(StepFailed, match=r"3 rows in items where itype = 'BK', one expected"):
        apply_command(desk.engine, parse_profile("wide", data), member, "set_item", payload)
    assert {desk.item_view(f"{HERE}000000{n}")["holding"] for n in (1, 2, 3)} == {HERE}


def test_a_time_sent_to_a_whole_second_column_finds_the_row_the_desk_wrote(koha):
    desk, member, loan = koha
    # The hub knows the checkout time to the microsecond; Koha's issuedate is a DATETIME
    # (whole seconds). A step finding the loan by that time must still find it.
    data = _koha_with(set_item=[{
        "op": "update", "table": "issues",
        "where": {"itemnumber": "@item", "issuedate": ":state_at"},
        "set": {"date_due": ":due_at"}}])
    payload = {"barcode": BOOK, "holder": HERE, "due_at": "2026-11-20 23:59:00",
               "state_at": (T0 + timedelta(minutes=5, microseconds=654321)).isoformat(sep=" ")}
    [outcome] = apply_command(desk.engine, parse_profile("by-time", data), member, "set_item",
                              payload)
    assert (outcome.found, outcome.changed) == (1, 1)
    with desk.engine.connect() as conn:
        due = conn.exec_driver_sql(
            f"SELECT date_due FROM issues WHERE issue_id = {loan}").scalar_one()
    assert due == datetime(2026, 11, 20, 23, 59)


def test_a_due_time_sent_to_a_date_column_is_written_as_its_day(koha):
    desk, member, _ = koha
    payload = {"barcode": f"{HERE}0000003", "holder": THERE, "due_at": "2026-11-20 23:59:59",
               "state_at": "2026-10-02 10:00:00"}
    apply_command(desk.engine, load_profile("koha"), member, "set_item", payload)
    assert desk.item_view(f"{HERE}0000003")["onloan"] == datetime(2026, 11, 20).date()


def test_a_replayed_close_loan_finds_its_rows_gone_and_is_not_an_error(koha):
    desk, member, loan = koha
    profile = load_profile("koha")
    first = apply_command(desk.engine, profile, member, "close_loan", _close_loan(loan, THERE))
    again = apply_command(desk.engine, profile, member, "close_loan", _close_loan(loan, THERE))
    # copy_row, delete, the 'return' statistics row, the item; no staff note (a branch per
    # member, not one consortium branch); no stand-in loan (not lent).
    assert [o.changed for o in first] == [1, 1, 1, 1, 0, 0, 0]
    # The loan moved already; the item is written the same state again (its version equal).
    assert [o.changed for o in again[:3]] == [0, 0, 0]
    assert [o.note for o in again[:3]] == ["applied before", "no row (applied before)",
                                           "there already"]
    assert desk.item_view(BOOK) == {"holding": THERE, "onloan": None, "open_loan": None}


def test_a_close_loan_for_a_loan_this_ils_never_had_fails(koha):
    desk, member, _ = koha
    with pytest.raises(StepFailed, match=r"'close_loan' step 1 \(copy_row issues\): no row in "
                                         r"issues where issue_id = 424242"):
        apply_command(desk.engine, load_profile("koha"), member, "close_loan",
                      _close_loan(424242, THERE))


KOHA_TOML = tomllib.loads((PROFILE_DIR / "koha.toml").read_text())


def _koha_with(**writeback) -> dict:
    return {**KOHA_TOML, "writeback": {**KOHA_TOML["writeback"], **writeback}}


def test_a_parameter_the_command_does_not_carry_fails_the_command_by_name(koha):
    desk, member, _ = koha
    data = _koha_with(set_item=[{
        "op": "update", "table": "items", "where": {"barcode": ":barcode"},
        "set": {"onloan": ":due_date"}}])  # the whole-day variant circhub no longer sends
    payload = {"barcode": BOOK, "holder": THERE, "due_at": None,
               "state_at": "2026-10-02 10:00:00"}
    with pytest.raises(StepFailed, match=r"'set_item' step 1 \(update items\): write-back "
                                         r"parameter 'due_date' missing from the command"):
        apply_command(desk.engine, parse_profile("old", data), member, "set_item", payload)

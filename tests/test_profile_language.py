"""Profile language forms not covered by a shipped profile's own tests, each on a real database
(MariaDB with the Koha schema): a value map, conditions beyond equality, a composite key's part
in a write-back, a version guard across a joined table, a column written only when the command
has the value."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta

import pytest

from circhub.connections.engines import engine_for
from circhub.connections.members import Member
from circhub.connections.profile import PROFILE_DIR, ProfileError, parse_profile
from circhub.connections.sql import extract_query
from circhub.simulator.koha import KohaDesk
from circhub.tasks.sync.extract import read_entity
from circhub.tasks.writeback.push import apply_command

HERE, THERE = "AA001", "BB001"
T0 = datetime(2026, 10, 1, 9, 0)
KOHA = tomllib.loads((PROFILE_DIR / "koha.toml").read_text())


@pytest.fixture
def koha(mariadb_db):
    url = mariadb_db()
    desk = KohaDesk(engine_for(url), HERE)
    desk.create_schema({HERE: "Alpha Library", THERE: "Beta Library"})
    [reader] = desk.add_readers([{"cardnumber": "510104199001011234", "surname": "Li",
                                  "firstname": "Reader", "dateofbirth": None, "sex": "F",
                                  "dateenrolled": None}])
    desk.add_items([f"{HERE}000000{n}" for n in (1, 2)], T0)
    desk.checkout(f"{HERE}0000001", reader, T0 + timedelta(hours=1), T0 + timedelta(days=28))
    member = Member.model_validate({"code": HERE, "name": "Alpha", "profile": "koha",
                                    "connection": url})
    return desk, member


def _items_with(**columns) -> dict:
    source = {**KOHA["entities"]["items"]["sources"][0]}
    source["columns"] = {**source["columns"], **columns.pop("columns", {})}
    source.update(columns)
    return {**KOHA, "entities": {**KOHA["entities"], "items": {"sources": [source]}}}


def _with_set_item(steps: list[dict]) -> dict:
    return {**KOHA, "writeback": {**KOHA["writeback"], "set_item": steps}}


def _extract(desk, profile, entity: str = "items"):
    return read_entity(desk.engine, extract_query(profile.entities[entity]), entity)


def test_a_value_map_reads_codes_as_canonical_values(koha):
    desk, _ = koha
    profile = parse_profile("mapped", _items_with(columns={
        "item_type": {"map": "itype", "values": {"BK": "BOOK"}, "default": "OTHER"}}))
    assert set(_extract(desk, profile)["item_type"]) == {"BOOK"}


def test_source_conditions_beyond_equality(koha):
    desk, _ = koha
    on_loan = parse_profile("on-loan", _items_with(where={"onloan": "$not_null",
                                                          "itype": {"in": ["BK", "X"]}}))
    assert list(_extract(desk, on_loan)["barcode"]) == [f"{HERE}0000001"]
    seen_after = {"datelastseen": {">": "2026-10-01 09:30:00"}}
    later = parse_profile("later", _items_with(where=seen_after))
    assert list(_extract(desk, later)["barcode"]) == [f"{HERE}0000001"]


def test_a_composite_key_part_finds_its_row(koha):
    desk, member = koha
    profile = parse_profile("parts", _with_set_item([{
        "op": "update", "table": "items", "where": {"itemnumber": ":barcode.1"},
        "set": {"holdingbranch": ":holder_branch"}}]))
    apply_command(desk.engine, profile, member, "set_item",
                  {"barcode": "x-2", "holder": THERE, "due_at": None, "state_at": None})
    assert desk.item_view(f"{HERE}0000002")["holding"] == THERE


@pytest.mark.parametrize(("state_at", "moved"), [(T0, False), (T0 + timedelta(days=1), True)])
def test_a_version_guard_across_a_joined_table(koha, state_at, moved):
    desk, member = koha
    # The item's open loan began at T0 + 1 h: a command about an older state leaves it alone.
    profile = parse_profile("guarded", _with_set_item([{
        "op": "update", "table": "items", "where": {"barcode": ":barcode"},
        "newer_in": [{"table": "issues", "on": {"itemnumber": "itemnumber"},
                      "column": "issuedate", "value": ":state_at"}],
        "set": {"holdingbranch": ":holder_branch"}}]))
    [outcome] = apply_command(desk.engine, profile, member, "set_item", {
        "barcode": f"{HERE}0000001", "holder": THERE, "due_at": None,
        "state_at": state_at.isoformat(sep=" ")})
    assert outcome.changed == int(moved)
    assert desk.item_view(f"{HERE}0000001")["holding"] == (THERE if moved else HERE)


@pytest.mark.parametrize(("due_at", "onloan"), [(None, None), ("2026-11-05 10:00:00", "set")])
def test_a_column_written_only_when_the_command_has_the_value(koha, due_at, onloan):
    desk, member = koha
    profile = parse_profile("conditional", _with_set_item([{
        "op": "update", "table": "items", "where": {"barcode": ":barcode"},
        "set": {"holdingbranch": ":holder_branch",
                "onloan": {"value": ":due_at", "when": {"due_at": "set"}}}}]))
    apply_command(desk.engine, profile, member, "set_item", {
        "barcode": f"{HERE}0000002", "holder": THERE, "due_at": due_at, "state_at": None})
    view = desk.item_view(f"{HERE}0000002")
    assert view["holding"] == THERE
    assert view["onloan"] == (datetime(2026, 11, 5).date() if onloan else None)


def test_an_unknown_step_key_is_refused():
    with pytest.raises(ProfileError,
                       match=r"unknown key 'unles_newer' \(did you mean unless_newer\?\)"):
        parse_profile("typo", _with_set_item([{
            "op": "update", "table": "items", "where": {"barcode": ":barcode"},
            "set": {"holdingbranch": ":holder_branch"}, "unles_newer": {}}]))


def test_returns_belongs_to_an_insert():
    with pytest.raises(ProfileError, match="'returns' is"):
        parse_profile("odd", _with_set_item([{
            "op": "update", "table": "items", "where": {"barcode": ":barcode"},
            "set": {"holdingbranch": ":holder_branch"},
            "returns": {"column": "itemnumber", "as": "x"}}]))

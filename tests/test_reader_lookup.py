"""Recognition at the desk: for a presented ID number, is this a consortium reader, where is
home, which members hold accounts, what is on loan anywhere. The number never comes back in
clear. Koha members on MariaDB and the central store on PostgreSQL; the command on SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest
from typer.testing import CliRunner

from circhub.domain.identity import mask_id_number
from circhub.simulator.world import make_id_number
from circhub.tasks.readers.lookup import recognise
from tests.helpers import koha_consortium, sync_cycle

A, B, C = "SC001", "CQ001", "CD001"


@pytest.fixture
def world_and_config(tmp_path, mariadb_db, pg_db):
    return koha_consortium(tmp_path, [mariadb_db() for _ in range(3)], pg_db(), readers=3)


def _visitor(world):
    """A reader of A who, a day later, borrows a book of B at B and one of A at home."""
    person = next(p for p in world.people if p.home == A)
    world.clock += timedelta(days=1)
    world.checkout(f"{B}0000001", B, person)
    world.checkout(f"{A}0000002", A, person)
    return person


def test_a_reader_known_at_two_members_is_recognised_with_home_accounts_and_loans_anywhere(
        world_and_config):
    world, config = world_and_config
    person = _visitor(world)
    rt = sync_cycle(config)

    found = recognise(rt.store, rt.id_key, person.id_number)

    assert found.is_reader and found.id_status == "valid"
    assert found.id_masked == mask_id_number(person.id_number) and "*" in found.id_masked
    assert found.home_member == A
    assert found.members == sorted([A, B])
    assert {(ln.barcode, ln.member, ln.owner) for ln in found.on_loan} == {
        (f"{B}0000001", B, B), (f"{A}0000002", A, A)}
    assert person.id_number not in repr(found)


def test_a_book_returned_at_another_member_is_no_longer_on_loan_to_the_reader(
        world_and_config):
    world, config = world_and_config
    person = _visitor(world)
    sync_cycle(config)
    world.checkin(f"{B}0000001", C)  # returned at a third member; B is told by the hub

    rt = sync_cycle(config)

    found = recognise(rt.store, rt.id_key, person.id_number)
    assert [ln.barcode for ln in found.on_loan] == [f"{A}0000002"]


def test_a_valid_number_nobody_registered_is_not_a_reader_and_an_invalid_one_names_its_rule(
        world_and_config):
    import random

    world, config = world_and_config
    rt = sync_cycle(config)
    stranger, _, _ = make_id_number(random.Random(99), "Chengdu")

    unknown = recognise(rt.store, rt.id_key, stranger)
    typo = recognise(rt.store, rt.id_key, stranger[:-1] + ("1" if stranger[-1] != "1" else "2"))

    assert (unknown.is_reader, unknown.id_status, unknown.accounts) == (False, "valid", [])
    assert (typo.is_reader, typo.id_status, typo.rule) == (False, "invalid", "id_check_digit")
    assert "*" in typo.id_masked


def test_lookup_command_reads_the_number_from_stdin_and_prints_it_masked_only(tmp_path):
    from circhub.cli import app

    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(3)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db")
    person = _visitor(world)
    sync_cycle(config)

    result = CliRunner().invoke(app, ["reader", "lookup", "-c", str(config)],
                                input=person.id_number + "\n")

    assert result.exit_code == 0, result.output
    assert person.id_number not in result.output
    assert mask_id_number(person.id_number) in result.output
    assert f"home member {A}" in result.output
    assert f"account at {B}" in result.output and f"{B}0000001 lent by {B}" in result.output

"""One reader, many accounts: accounts of one person at several members link to one reader;
the home member is where the person first registered, whatever order members sync in; an
account whose birth date or sex contradicts the ID number is linked, flagged, listed for review,
and never decides the home. Koha members on MariaDB, central store on PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from typer.testing import CliRunner

from circhub.domain.identity import reader_key
from circhub.domain.readers import AccountFacts, account_flags, choose_home
from circhub.domain.schema import reader_accounts, readers
from circhub.simulator import koha
from circhub.tasks.readers.lookup import flagged_accounts
from tests.helpers import koha_consortium, sync_cycle

A, B = "SC001", "CQ001"  # A is synced first: it comes first in the config


@pytest.fixture
def visitor(tmp_path, mariadb_db, pg_db):
    """A reader of B who opened an account at A a day after registering at home."""
    world, config = koha_consortium(tmp_path, [mariadb_db() for _ in range(3)], pg_db(),
                                    readers=3)
    person = next(p for p in world.people if p.home == B)
    world.clock += timedelta(days=1)
    world.checkout(f"{A}0000001", A, person)
    return world, config, person


def _accounts(rt, person, key=None):
    key = key or reader_key(person.id_number, rt.id_key)
    with rt.store.connect() as conn:
        return {r.member: r for r in conn.execute(
            select(reader_accounts).where(reader_accounts.c.reader_key == key))}


def _reader(rt, person):
    with rt.store.connect() as conn:
        return conn.execute(select(readers).where(
            readers.c.reader_key == reader_key(person.id_number, rt.id_key))).one()


def _edit_borrower(world, member, person, **values):
    with world.desks[member].engine.begin() as conn:
        conn.execute(update(koha.borrowers).where(
            koha.borrowers.c.borrowernumber == person.accounts[member])
            .values(updated_on=func.current_timestamp(), **values))


def test_accounts_at_two_members_link_to_one_reader_whose_home_is_where_they_registered_first(
        visitor):
    world, config, person = visitor

    rt = sync_cycle(config)  # A's account is merged first, yet home is B

    assert set(_accounts(rt, person)) == {A, B}
    reader = _reader(rt, person)
    assert reader.home_member == B
    # Never stored beside the masked number, which they would rebuild (its hidden digits).
    assert (reader.birth_date, reader.sex) == (None, None)
    with rt.store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(readers)).scalar() == len(
            world.people)


def test_an_account_contradicting_the_id_is_linked_flagged_listed_and_never_the_home(visitor):
    world, config, person = visitor
    wrong_sex = "F" if person.sex == "M" else "M"
    _edit_borrower(world, B, person, sex=wrong_sex, dateofbirth=date(1901, 1, 1))

    rt = sync_cycle(config)

    accounts = _accounts(rt, person)
    assert accounts[B].flag == "birth_date_mismatch,sex_mismatch"  # still this reader's
    assert accounts[A].flag is None
    reader = _reader(rt, person)
    assert reader.home_member == A  # B registered first, but its record contradicts the ID
    # Never stored beside the masked number, which they would rebuild (its hidden digits).
    assert (reader.birth_date, reader.sex) == (None, None)
    (listed,) = flagged_accounts(rt.store)
    assert (listed.member, listed.local_id) == (B, str(person.accounts[B]))
    assert "*" in listed.id_masked


def test_fixing_the_record_at_the_member_clears_the_flag_and_restores_the_home(visitor):
    world, config, person = visitor
    _edit_borrower(world, B, person, sex="F" if person.sex == "M" else "M")
    sync_cycle(config)
    _edit_borrower(world, B, person, sex=person.sex)

    rt = sync_cycle(config)

    assert _accounts(rt, person)[B].flag is None
    assert _reader(rt, person).home_member == B
    assert flagged_accounts(rt.store) == []


def test_review_command_lists_flagged_accounts_masked(visitor):
    from circhub.cli import app

    world, config, person = visitor
    _edit_borrower(world, A, person, dateofbirth=date(1901, 1, 1))
    sync_cycle(config)

    result = CliRunner().invoke(app, ["reader", "review", "-c", str(config)],
                                env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert "birth_date_mismatch" in result.output and A in result.output
    assert person.id_number not in result.output


def test_an_existing_store_gains_the_registration_column_without_losing_accounts(
        visitor):
    world, config, person = visitor
    rt = sync_cycle(config)
    with rt.store.begin() as conn:  # a pre-Alembic store from before the column existed
        conn.execute(text("ALTER TABLE reader_accounts DROP COLUMN registered_on"))
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("DROP TABLE member_pauses"))  # 0003: no pre-Alembic store has it
        conn.execute(text("ALTER TABLE watermarks ADD COLUMN last_key VARCHAR(64)"))  # 0004
    from circhub.connections.migrations import upgrade

    assert "adopted pre-Alembic store as 0001" in upgrade(rt.store)
    assert set(_accounts(rt, person)) == {A, B}


# --- the rules themselves -----------------------------------------------------------------


def test_flags_name_every_contradiction_and_blank_ils_facts_contradict_nothing():
    born = date(1985, 3, 3)
    row = {"id_birth_date": born, "id_sex": "M"}
    assert account_flags({**row, "birth_date": datetime(1985, 3, 3), "sex": "男"}) is None
    assert account_flags({**row, "birth_date": None, "sex": "U"}) is None
    assert account_flags({**row, "birth_date": datetime(1985, 3, 4), "sex": "female"}) == \
        "birth_date_mismatch,sex_mismatch"
    assert account_flags({**row, "sex": "2"}) == "sex_mismatch"


def test_home_ties_keep_the_current_home_so_it_never_flaps():
    day = datetime(2025, 1, 1)
    same_day = [AccountFacts("SC001", day, None), AccountFacts("CQ001", day, None)]
    assert choose_home(same_day, "CQ001") == "CQ001"
    assert choose_home(same_day, None) == "CQ001"  # first by code when nothing was chosen
    undated = [AccountFacts("SC001", None, None), AccountFacts("CQ001", day, None)]
    assert choose_home(undated, "SC001") == "CQ001"  # a known date beats an unknown one
    flagged = [AccountFacts("SC001", day, "sex_mismatch")]
    assert choose_home(flagged, None) == "SC001"  # only flagged accounts: still a home

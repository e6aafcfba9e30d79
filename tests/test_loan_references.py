"""Nothing wrong gets in, nothing right is lost: every time of a loan checked, a loan never merged
with a reference its member does not have, loans linked once their reader is released, and one
person's two accounts at one member found across batches and number forms. Koha members on
MariaDB, central store on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, text, update

from circhub.domain.identity import upgrade_15_to_18
from circhub.domain.schema import loans, quarantine, reader_accounts, readers
from circhub.simulator import koha
from circhub.tasks.readers.links import DUPLICATE_ACCOUNT
from tests.helpers import koha_consortium, sync_cycle


def _held(rt, entity: str = "loans") -> dict[str, tuple[str, ...]]:
    with rt.store.connect() as conn:
        rows = conn.execute(select(quarantine.c.row_key, quarantine.c.rules).where(
            quarantine.c.entity == entity, quarantine.c.released_at.is_(None))).all()
    return {r.row_key: tuple(r.rules) for r in rows}


def _loan(rt, member: str, issue_id: int):
    with rt.store.connect() as conn:
        return conn.execute(select(loans).where(
            loans.c.member == member, loans.c.local_id == str(issue_id))).first()


def _lend(world, code: str, n: int = 1):
    person = next(p for p in world.people if p.home == code)
    barcode = f"{code}{n:07d}"
    world.checkout(barcode, code, person)
    return world.books[barcode].loan[1], person


def test_a_loan_issued_in_the_future_is_quarantined_not_merged(tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db())
    code = list(world.desks)[0]
    issue, _ = _lend(world, code)
    with world.desks[code].engine.begin() as conn:  # a desk clock 30 days ahead
        conn.execute(update(koha.issues).where(koha.issues.c.issue_id == issue).values(
            issuedate=world.clock + timedelta(days=30), date_due=world.clock + timedelta(days=58)))

    rt = sync_cycle(config)

    assert _held(rt) == {str(issue): ("timestamp_not_in_future",)}
    assert _loan(rt, code, issue) is None


def test_an_open_loan_of_a_borrower_the_member_does_not_have_is_quarantined(
        tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db())
    code = list(world.desks)[0]
    issue, _ = _lend(world, code)
    with world.desks[code].engine.begin() as conn:
        # Koha's issues_ibfk_1 forbids this today; rows from before Koha had foreign keys
        # (MyISAM-era data carried along by upgrades) still do it.
        conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
        conn.execute(update(koha.issues).where(koha.issues.c.issue_id == issue).values(
            borrowernumber=99999))
        conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))

    rt = sync_cycle(config)

    assert _held(rt) == {str(issue): ("reader_known",)}
    assert _loan(rt, code, issue) is None


def test_a_returned_loan_whose_reader_is_gone_is_history_merged_without_a_reader(
        tmp_path, mariadb_db, pg_db):
    """Deleting a patron sets old_issues.borrowernumber to NULL (Koha's foreign-key action)."""
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db())
    code = list(world.desks)[0]
    issue, _ = _lend(world, code)
    world.checkin(f"{code}0000001", code)
    with world.desks[code].engine.begin() as conn:
        conn.execute(update(koha.old_issues).where(koha.old_issues.c.issue_id == issue).values(
            borrowernumber=None))

    rt = sync_cycle(config)

    assert _held(rt) == {}
    loan = _loan(rt, code, issue)
    assert loan.reader_key is None and loan.source_returned_at is not None


def test_a_loan_of_a_book_the_hub_does_not_have_is_quarantined(tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db())
    code = list(world.desks)[0]
    rt = sync_cycle(config)
    issue, _ = _lend(world, code, n=3)
    with world.desks[code].engine.begin() as conn:  # relabelled, written behind the cursor
        conn.execute(update(koha.items).where(koha.items.c.barcode == f"{code}0000003").values(
            barcode=f"{code}0000099", timestamp=world.clock - timedelta(days=30)))

    rt = sync_cycle(config)

    assert _held(rt)[str(issue)] == ("item_known",)
    assert _loan(rt, code, issue) is None


def test_a_loan_made_while_its_reader_was_quarantined_is_linked_once_the_reader_is_fixed(
        tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db())
    code = list(world.desks)[0]
    issue, person = _lend(world, code)
    borrower = person.accounts[code]
    typo = person.id_number[:-1] + ("0" if person.id_number[-1] != "0" else "1")
    with world.desks[code].engine.begin() as conn:
        conn.execute(update(koha.borrowers).where(
            koha.borrowers.c.borrowernumber == borrower).values(cardnumber=typo))

    rt = sync_cycle(config)
    assert str(borrower) in _held(rt, "readers")
    waiting = _loan(rt, code, issue)
    assert waiting is not None and waiting.reader_key is None  # merged: the book is out

    with world.desks[code].engine.begin() as conn:  # fixed at the source
        conn.execute(update(koha.borrowers).where(
            koha.borrowers.c.borrowernumber == borrower).values(
            cardnumber=person.id_number, updated_on=func.current_timestamp()))
    rt = sync_cycle(config)

    assert _held(rt, "readers") == {}
    linked = _loan(rt, code, issue)
    with rt.store.connect() as conn:
        key = conn.execute(select(reader_accounts.c.reader_key).where(
            reader_accounts.c.member == code,
            reader_accounts.c.local_id == str(borrower))).scalar_one()
    assert linked.reader_key == key is not None


def _legacy_15(id_number: str) -> str:
    """The 15-digit card one person held before the 18-digit one (no century, no check)."""
    legacy = id_number[:6] + id_number[8:17]
    assert upgrade_15_to_18(legacy) == id_number
    return legacy


def _accounts_of(rt, code: str) -> dict[str, tuple[str, str | None]]:
    with rt.store.connect() as conn:
        rows = conn.execute(select(reader_accounts).where(reader_accounts.c.member == code))
        return {r.local_id: (r.reader_key, r.flag) for r in rows}


def test_one_persons_15_and_18_digit_cards_in_one_batch_are_one_reader_flagged_twice(
        tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db())
    code = list(world.desks)[0]
    person = world._person(code)
    while person.born.year >= 2000:  # 15-digit cards were issued to people born in the 1900s
        person = world._person(code)
    old, new = world.desks[code].add_readers([
        {"cardnumber": _legacy_15(person.id_number), "surname": "Li", "firstname": "Old"},
        {"cardnumber": person.id_number, "surname": "Li", "firstname": "New"}])

    rt = sync_cycle(config)

    accounts = _accounts_of(rt, code)
    assert accounts[str(old)][0] == accounts[str(new)][0] is not None  # one person
    assert DUPLICATE_ACCOUNT in accounts[str(old)][1]
    assert DUPLICATE_ACCOUNT in accounts[str(new)][1]
    with rt.store.connect() as conn:
        masks = conn.execute(select(readers.c.id_masked).where(
            readers.c.reader_key == accounts[str(old)][0])).scalars().all()
    assert masks == [person.id_number[:6] + "*" * 8 + person.id_number[-4:]]  # the 18-digit mask


def test_one_persons_second_account_in_a_later_sync_is_found_and_both_flagged(
        tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db())
    code = list(world.desks)[0]
    person = next(p for p in world.people if p.home == code and p.born.year < 2000)
    first = str(person.accounts[code])
    rt = sync_cycle(config)
    assert _accounts_of(rt, code)[first][1] is None

    (second,) = world.desks[code].add_readers([
        {"cardnumber": _legacy_15(person.id_number), "surname": "Li", "firstname": "Again"}])
    rt = sync_cycle(config)

    accounts = _accounts_of(rt, code)
    assert accounts[first][0] == accounts[str(second)][0]
    assert DUPLICATE_ACCOUNT in accounts[first][1]
    assert DUPLICATE_ACCOUNT in accounts[str(second)][1]

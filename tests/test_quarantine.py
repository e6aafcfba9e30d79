"""A row that fails validation goes to quarantine with the rule it broke; the good rows beside
it are merged; fixing the row at the source releases it on the next run."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from circhub.domain.identity import looks_like_id_number
from circhub.domain.schema import loans, quarantine, reader_accounts
from circhub.simulator import koha
from tests.helpers import koha_consortium, sync_cycle


def _quarantined(rt):
    with rt.store.connect() as conn:
        return conn.execute(select(quarantine).where(quarantine.c.released_at.is_(None))).all()


def test_bad_rows_are_quarantined_by_rule_and_the_good_rows_beside_them_are_merged(
        tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db(),
                                    readers=5, bad_readers=1)
    a = list(world.desks)[0]
    for n, person in enumerate([p for p in world.people if p.home == a][:2], start=1):
        world.checkout(f"{a}{n:07d}", a, person)
    bad_issue = world.books[f"{a}0000001"].loan[1]
    with world.desks[a].engine.begin() as conn:  # a loan due before it was issued
        conn.execute(update(koha.issues).where(koha.issues.c.issue_id == bad_issue).values(
            date_due=world.clock - timedelta(days=3)))

    rt = sync_cycle(config)

    rows = {(r.entity, tuple(r.rules)) for r in _quarantined(rt)}
    assert ("loans", ("issued_not_after_due",)) in rows
    assert ("readers", ("id_number_valid", "id_check_digit")) in rows  # the specific rule too
    bad_reader = next(r for r in _quarantined(rt) if r.entity == "readers")
    assert bad_reader.member == a
    assert not looks_like_id_number(str(bad_reader.row_masked))  # masked, never in clear
    with rt.store.connect() as conn:
        merged_loans = conn.execute(select(loans.c.local_id).where(loans.c.member == a)).all()
        accounts = conn.execute(select(func.count()).select_from(reader_accounts)
                                .where(reader_accounts.c.member == a)).scalar()
    good_issue = world.books[f"{a}0000002"].loan[1]
    assert [r.local_id for r in merged_loans] == [str(good_issue)]
    assert accounts == 5  # every good reader of that member


def test_a_row_fixed_at_the_source_is_released_and_merged(tmp_path):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db",
                                    bad_readers=1)
    rt = sync_cycle(config)
    (bad,) = _quarantined(rt)
    desk = world.desks[bad.member]
    person = world._person(bad.member)  # a correct number for the same reader
    row = koha.borrowers.c.borrowernumber == int(bad.row_key)
    with desk.engine.begin() as conn:
        # The fix's cursor is chosen, not read off the wall clock: one second after the bad
        # row's own, so it is past the watermark whatever the clocks of the ILS and the hub.
        stamped = conn.execute(select(koha.borrowers.c.updated_on).where(row)).scalar_one()
        conn.execute(update(koha.borrowers).where(row).values(
            cardnumber=person.id_number, updated_on=stamped + timedelta(seconds=1)))

    rt = sync_cycle(config)

    assert _quarantined(rt) == []
    with rt.store.connect() as conn:
        account = conn.execute(select(reader_accounts).where(
            reader_accounts.c.member == bad.member,
            reader_accounts.c.local_id == bad.row_key)).one()
    assert account.reader_key is not None


def test_a_fix_at_one_member_releases_none_of_another_members_rows_under_the_same_key(tmp_path):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(3)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db",
                                    bad_readers=3)  # one at each member
    newest = max(r.updated_on for r in _borrowers(world))
    key = max(r.borrowernumber for r in _borrowers(world))  # the bad reader, added last
    for desk in world.desks.values():  # behind every later poll's lookback: read once
        with desk.engine.begin() as conn:
            conn.execute(update(koha.borrowers).where(koha.borrowers.c.borrowernumber == key)
                         .values(updated_on=newest - timedelta(days=30)))
    rt = sync_cycle(config)
    held = {r.member: r.row_key for r in _quarantined(rt)}
    assert held == dict.fromkeys(world.desks, str(key))  # the same key at all three
    middle = sorted(held)[1]  # members on either side of it, in code order
    with world.desks[middle].engine.begin() as conn:  # fixed, stamped past the watermark
        conn.execute(update(koha.borrowers).where(koha.borrowers.c.borrowernumber == key).values(
            cardnumber=world._person(middle).id_number, updated_on=newest + timedelta(seconds=1)))

    rt = sync_cycle(config)

    assert sorted(r.member for r in _quarantined(rt)) == sorted(set(held) - {middle})



def test_a_fix_releases_only_its_own_entitys_row_under_that_key(tmp_path):
    """Items 1 and 3 and loans 1 and 3 held; item 1 and loan 3 fixed: item 3 and loan 1 stay
    held, though an item and a loan share each key."""
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db")
    code = list(world.desks)[0]
    person = next(p for p in world.people if p.home == code)
    for n in (4, 5, 6):  # loans 1, 2, 3
        world.checkout(f"{code}{n:07d}", code, person)
    desk = world.desks[code]
    items, issues = koha.items.c, koha.issues.c
    with desk.engine.begin() as conn:
        for key in (1, 3):
            conn.execute(update(koha.items).where(items.itemnumber == key).values(
                barcode=f"XX{key:07d}"))  # nobody's prefix
            issued = conn.execute(select(issues.issuedate).where(issues.issue_id == key)
                                  ).scalar_one()
            conn.execute(update(koha.issues).where(issues.issue_id == key).values(
                date_due=issued - timedelta(days=1)))  # due before it was issued
    rt = sync_cycle(config)
    assert _held_keys(rt) == {("items", "1"), ("items", "3"), ("loans", "1"), ("loans", "3")}
    with desk.engine.begin() as conn:
        stamp = conn.execute(select(items.timestamp).where(items.itemnumber == 1)).scalar_one()
        conn.execute(update(koha.items).where(items.itemnumber == 1).values(
            barcode=f"{code}0000001", timestamp=stamp + timedelta(seconds=1)))
        row = conn.execute(select(issues.issuedate, issues.timestamp).where(
            issues.issue_id == 3)).one()
        conn.execute(update(koha.issues).where(issues.issue_id == 3).values(
            date_due=row.issuedate + timedelta(days=30), timestamp=row.timestamp
            + timedelta(seconds=1)))

    rt = sync_cycle(config)

    assert _held_keys(rt) == {("items", "3"), ("loans", "1")}


def _held_keys(rt) -> set[tuple[str, str]]:
    return {(r.entity, r.row_key) for r in _quarantined(rt)}

def _borrowers(world):
    rows = []
    for desk in world.desks.values():
        with desk.engine.connect() as conn:
            rows += conn.execute(select(koha.borrowers)).all()
    return rows

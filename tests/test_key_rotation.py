"""Rotating the reader-ID key: every reader keeps all its accounts and loans, no old key is left,
and nothing still on the old key can write again. Koha members on MariaDB, central store on
PostgreSQL (the CLI case on SQLite)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select, update
from typer.testing import CliRunner

from circhub.connections.engines import ConnectionSetupError
from circhub.connections.holds import holding
from circhub.connections.key_epochs import KeyMismatch, current_epoch
from circhub.connections.runtime import open_runtime
from circhub.domain.identity import reader_key
from circhub.domain.readers import key_fingerprint
from circhub.domain.schema import loans, reader_accounts, readers
from circhub.simulator import koha
from circhub.tasks.readers.rekey import RotationRefused, rotate_reader_key
from circhub.tasks.sync.extract import SourceUnavailable, extract_member
from circhub.tasks.sync.merge import merge_batch
from circhub.tasks.sync.validate import validate_extract
from tests.helpers import koha_consortium, sync_cycle
from tests.store_scan import store_texts

OLD, NEW = "old-reader-key-0123456789abcdef", "new-reader-key-fedcba9876543210"
DOWN = "mysql+pymysql://root@127.0.0.1:1/not_there"


@pytest.fixture
def played(tmp_path, mariadb_db, pg_db, monkeypatch):
    monkeypatch.setenv("CIRCHUB_ID_KEY", OLD)
    members = [mariadb_db() for _ in range(3)]
    world, config = koha_consortium(tmp_path, members, pg_db(), seed=23, readers=6, items=8,
                                    demo=False)
    world.play(days=5, actions_per_day=25)
    return world, config, sync_cycle(config), members


def _links(rt, world, key: str) -> dict[int, tuple[set, set]]:
    """Person (by position) -> (accounts, loans) filed under that person's key."""
    with rt.store.connect() as conn:
        accounts = conn.execute(select(reader_accounts.c.reader_key, reader_accounts.c.member,
                                       reader_accounts.c.local_id)).all()
        lent = conn.execute(select(loans.c.reader_key, loans.c.member, loans.c.local_id)).all()
    out = {}
    for i, person in enumerate(world.people):
        k = reader_key(person.id_number, key.encode())
        out[i] = ({(m, lid) for rk, m, lid in accounts if rk == k},
                  {(m, lid) for rk, m, lid in lent if rk == k})
    return out


def _reader_keys(rt) -> set[str]:
    with rt.store.connect() as conn:
        return set(conn.execute(select(readers.c.reader_key)).scalars())


def _use_key(monkeypatch, key: str):
    monkeypatch.setenv("CIRCHUB_ID_KEY", key)
    open_runtime.cache_clear()


def test_rotation_keeps_every_reader_linked_to_all_its_accounts_and_loans_and_no_old_key_remains(
        played, monkeypatch):
    world, config, rt, _ = played
    before = _links(rt, world, OLD)
    old_keys = _reader_keys(rt)
    assert any(len(acc) > 1 for acc, _ in before.values())  # people known at several members
    assert sum(len(lent) for _, lent in before.values()) > 10

    report = rotate_reader_key(rt, NEW.encode(), hold=holding)

    assert _links(rt, world, NEW) == before
    assert len(_reader_keys(rt)) == len(old_keys) == report.readers
    assert report.unlinkable == 0 and report.stale_accounts == 0
    leftovers = [(t, c) for t, c, text in store_texts(rt.store) if any(k in text for k in old_keys)]
    assert leftovers == []
    with rt.store.connect() as conn:
        assert current_epoch(conn).fingerprint == key_fingerprint(NEW.encode())


def test_after_rotation_the_old_key_refuses_to_start_and_the_new_one_syncs_without_splitting(
        played, monkeypatch):
    world, config, rt, _ = played
    rotate_reader_key(rt, NEW.encode(), hold=holding)

    _use_key(monkeypatch, OLD)
    with pytest.raises(KeyMismatch, match="not the central store's current key"):
        open_runtime(str(config))
    _use_key(monkeypatch, NEW)
    world.play(days=2, actions_per_day=25)
    rt = sync_cycle(config)

    links = _links(rt, world, NEW)
    with rt.store.connect() as conn:
        n_accounts = conn.execute(select(func.count()).select_from(reader_accounts)).scalar()
    assert sum(len(acc) for acc, _ in links.values()) == n_accounts  # all under a NEW key
    assert len(_reader_keys(rt)) == sum(1 for acc, _ in links.values() if acc)


def test_a_merge_extracted_before_the_rotation_is_refused_after_it(played):
    world, config, rt, _ = played
    member = rt.consortium.members[0]
    world.play(days=1, actions_per_day=10)
    with holding(member.code):
        ext = extract_member(rt.consortium, member, rt.store, rt.id_key)
    val = validate_extract(member.code, ext.frames, rt.member_view(member))

    rotate_reader_key(rt, NEW.encode(), hold=holding)

    with pytest.raises(KeyMismatch):
        merge_batch(rt.store, rt.consortium, member, ext, val)


def test_a_reader_deleted_at_every_source_keeps_accounts_and_loans_together(played):
    world, config, rt, _ = played
    before = _links(rt, world, OLD)
    i, (accounts, lent) = next((i, v) for i, v in before.items() if len(v[0]) == 1 and v[1])
    ((member, local_id),) = accounts
    with world.desks[member].engine.begin() as conn:
        conn.execute(delete(koha.borrowers).where(
            koha.borrowers.c.borrowernumber == int(local_id)))

    report = rotate_reader_key(rt, NEW.encode(), hold=holding)

    assert report.unlinkable == 1
    with rt.store.connect() as conn:
        (key,) = conn.execute(select(reader_accounts.c.reader_key).where(
            reader_accounts.c.member == member, reader_accounts.c.local_id == local_id)).one()
        its_loans = {(m, lid) for m, lid in conn.execute(
            select(loans.c.member, loans.c.local_id).where(loans.c.reader_key == key))}
    assert its_loans == lent
    assert key not in {reader_key(world.people[i].id_number, k.encode()) for k in (OLD, NEW)}


def test_an_account_changed_at_its_source_since_the_last_sync_is_relinked_by_the_next_sync(
        played, monkeypatch):
    world, config, rt, _ = played
    person = next(p for p in world.people if len(p.accounts) > 1)
    member, local_id = next(iter(person.accounts.items()))
    newcomer = world._person(member)  # the member re-used that account for someone else
    with world.desks[member].engine.begin() as conn:
        conn.execute(update(koha.borrowers).where(koha.borrowers.c.borrowernumber == local_id)
                     .values(cardnumber=newcomer.id_number, updated_on=func.current_timestamp()))

    report = rotate_reader_key(rt, NEW.encode(), hold=holding)
    assert report.stale_accounts == 1 and report.unlinkable == 0
    _use_key(monkeypatch, NEW)
    rt = sync_cycle(config)

    with rt.store.connect() as conn:
        key = conn.execute(select(reader_accounts.c.reader_key).where(
            reader_accounts.c.member == member,
            reader_accounts.c.local_id == str(local_id))).scalar_one()
    assert key == reader_key(newcomer.id_number, NEW.encode())


def test_an_unreachable_member_refuses_the_rotation_and_nothing_changes(played, monkeypatch):
    world, config, rt, members = played
    keys = _reader_keys(rt)
    config.write_text(config.read_text().replace(members[1], DOWN))
    open_runtime.cache_clear()
    rt = open_runtime(str(config))

    with pytest.raises(SourceUnavailable, match="nothing was changed"):
        rotate_reader_key(rt, NEW.encode(), hold=holding)

    assert _reader_keys(rt) == keys
    with rt.store.connect() as conn:
        assert current_epoch(conn).fingerprint == key_fingerprint(OLD.encode())


@pytest.mark.parametrize("new", [OLD, "", "short-key"], ids=["same", "empty", "short"])
def test_rotating_to_the_same_an_empty_or_a_short_key_is_refused(played, new):
    _, _, rt, _ = played
    with pytest.raises(RotationRefused):
        rotate_reader_key(rt, new.encode(), hold=holding)
    with rt.store.connect() as conn:
        assert current_epoch(conn).fingerprint == key_fingerprint(OLD.encode())


def test_rotate_key_command_takes_the_new_key_from_the_environment_and_never_prints_it(
        tmp_path, monkeypatch, prefect_server):  # each member read under its Prefect slot
    from circhub.cli import app

    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db",
                                    demo=False)
    _use_key(monkeypatch, OLD)
    world.play(days=2, actions_per_day=10)
    rt = sync_cycle(config)
    before = _links(rt, world, OLD)
    monkeypatch.setenv("CIRCHUB_NEW_ID_KEY", NEW)

    result = CliRunner().invoke(app, ["reader", "rotate-key", "-c", str(config)])

    assert result.exit_code == 0, result.output
    assert key_fingerprint(NEW.encode()) in result.output
    assert NEW not in result.output and OLD not in result.output
    _use_key(monkeypatch, NEW)
    assert _links(open_runtime(str(config)), world, NEW) == before
    _use_key(monkeypatch, OLD)
    with pytest.raises(ConnectionSetupError):
        open_runtime(str(config))

"""Alembic revision 0002 and the hashes stored before it: a store whose rows were hashed the old
way (pandas' text of the row) is upgraded, its hashes marked, and the first reconcile stores
the new hash of every row it compares without reporting drift; the rows within the next poll's
reach get theirs from that poll (real PostgreSQL store, SQLite Koha members)."""

from __future__ import annotations

from sqlalchemy import func, select, text

import circhub.domain.rowhash as rowhash
from circhub.connections.engines import member_engine
from circhub.connections.holds import holding
from circhub.connections.migrations import upgrade
from circhub.domain.records import spec
from circhub.domain.rowhash_legacy import LEGACY_MARK, legacy_row_hashes
from circhub.domain.schema import drift, mirror_table
from circhub.tasks.loads.reconcile import reconcile_member
from circhub.tasks.sync.extract import entity_query, iter_chunks, mapped_entities, prepare_frame
from tests.helpers import koha_consortium, sync_cycle


def _stored(rt, member, entity) -> dict[str, str]:
    table = mirror_table(spec(entity))
    with rt.store.connect() as conn:
        return dict(conn.execute(select(table.c.local_id, table.c.row_hash).where(
            table.c.member == member.code)).all())


def _source_hashes(rt, member, entity, hashes) -> dict[str, str]:
    """Every source row of the entity, hashed by `hashes` (the reconcile's reading)."""
    found = {}
    query = entity_query(member, entity, None).order_by(None)
    with holding(member.code):
        for chunk in iter_chunks(member_engine(member), query, entity):
            rows = prepare_frame(entity, chunk, rt.id_key)
            found.update(zip(rows[spec(entity).key].astype(str), hashes(entity, rows),
                             strict=True))
    return found


def test_old_style_hashes_are_marked_then_rehashed_by_reconcile_without_drift(
        tmp_path, pg_db, monkeypatch):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(2)]
    world, config = koha_consortium(tmp_path, members, pg_db(), items=12)
    world.play(days=3, actions_per_day=15)
    with monkeypatch.context() as old_code:  # the hashing of the code before revision 0002
        old_code.setattr(rowhash, "row_hashes", legacy_row_hashes)
        rt = sync_cycle(config)
    with rt.store.begin() as conn:  # as that code left it: at the baseline
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        conn.execute(text("DROP TABLE member_pauses"))  # a later revision's table
        conn.execute(text("ALTER TABLE watermarks ADD COLUMN last_key VARCHAR(64)"))  # 0004
    pairs = [(m, e) for m in rt.consortium.members for e in mapped_entities(m)]
    before = {(m.code, e): _stored(rt, m, e) for m, e in pairs}
    assert all(before.values())

    assert [s.split()[0] for s in upgrade(rt.store)][0] == "0002"

    for m, e in pairs:
        stored = _stored(rt, m, e)
        assert stored == {k: LEGACY_MARK + h for k, h in before[(m.code, e)].items()}
    for member in rt.consortium.members:
        with holding(member.code):
            assert all(d.clean for d in reconcile_member(rt, member))
    with rt.store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(drift)).scalar() == 0
    rehashed = [k for m, e in pairs for k, h in _stored(rt, m, e).items()
                if not h.startswith(LEGACY_MARK)]
    assert len(rehashed) > len(pairs)  # reconcile re-hashed the rows it compared
    # Rows within the next poll's reach are that poll's to read (and to hash anew).
    sync_cycle(config)
    for m, e in pairs:
        new = _source_hashes(rt, m, e, rowhash.row_hashes)
        assert _stored(rt, m, e) == {k: new[k] for k in before[(m.code, e)]}
    for member in rt.consortium.members:  # and again: nothing left to re-hash or to repair
        with holding(member.code):
            assert all(d.clean and not d.rehashed for d in reconcile_member(rt, member))

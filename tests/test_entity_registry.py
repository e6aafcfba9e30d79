"""An entity is declared once: a toy optional entity added by its declaration and one profile's
mapping is extracted, validated, merged, reconciled; the other profiles leave it unmapped."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, insert, select

from circhub.connections import profile
from circhub.connections.holds import holding
from circhub.domain.records import EntitySpec, Field, is_optional, register, unregister
from circhub.domain.schema import forget_mirror_table, mirror_table
from circhub.tasks.loads.reconcile import reconcile_member
from circhub.tasks.sync.cycle import run_cycle
from tests.helpers import koha_consortium

# The declaration: all a new entity needs beside a profile's mapping.
HOLDS = EntitySpec(
    name="holds", row_name="hold", optional=True,
    fields=(Field("local_id", "text", True), Field("reader_local_id", "text", True),
            Field("barcode", "text"), Field("placed_at", "datetime", True, past=True),
            Field("updated_at", "datetime", True, past=True)),
)

# The mapping, in the Koha profile's language: Koha keeps holds in `reserves`.
HOLDS_MAPPING = """
[entities.holds]
[[entities.holds.sources]]
table = "reserves"
[entities.holds.sources.columns]
local_id = "reserve_id"
reader_local_id = "borrowernumber"
barcode = "item_barcode"
placed_at = "reservedate"
updated_at = "timestamp"
"""

reserves = Table("reserves", MetaData(),  # a member's table (a sketch of Koha's `reserves`)
                 Column("reserve_id", Integer, primary_key=True),
                 Column("borrowernumber", Integer, nullable=False),
                 Column("item_barcode", String(20)),
                 Column("reservedate", DateTime),
                 Column("timestamp", DateTime, nullable=False))


@pytest.fixture
def holds_profile(tmp_path, monkeypatch):
    folder = tmp_path / "profiles"
    folder.mkdir()
    for shipped in profile.PROFILE_DIR.glob("*.toml"):
        (folder / shipped.name).write_text(shipped.read_text())
    (folder / "koha_holds.toml").write_text((folder / "koha.toml").read_text() + HOLDS_MAPPING)
    monkeypatch.setattr(profile, "PROFILE_DIR", folder)
    profile._load_cached.cache_clear()
    register(HOLDS)
    yield "koha_holds"
    unregister("holds")
    forget_mirror_table(HOLDS)
    profile._load_cached.cache_clear()


def test_a_toy_optional_entity_syncs_from_its_declaration_and_one_mapping(
        tmp_path, mariadb_db, pg_db, holds_profile):
    world, config = koha_consortium(tmp_path, [mariadb_db(), mariadb_db()], pg_db())
    config.write_text(config.read_text().replace('profile = "koha"', 'profile = "koha_holds"',
                                                 1))
    code, plain = list(world.desks)
    desk = world.desks[code]
    now = datetime.now().replace(microsecond=0)
    reserves.create(desk.engine)
    with desk.engine.begin() as conn:
        conn.execute(insert(reserves), [
            dict(reserve_id=1, borrowernumber=1, item_barcode=f"{code}0000001",
                 reservedate=now - timedelta(days=1), timestamp=now),
            dict(reserve_id=2, borrowernumber=2, item_barcode=None,
                 reservedate=now + timedelta(days=30), timestamp=now)])  # placed in the future
    from circhub.connections.runtime import open_runtime

    rt = open_runtime(str(config))
    mirror_table(HOLDS).create(rt.store)  # a new entity's table: a migration in production

    outcomes = run_cycle(rt, [code, plain], push=False)

    assert outcomes[code].ok and outcomes[plain].ok
    assert outcomes[code].extract.counts()["holds"] == 2
    assert "holds" not in outcomes[plain].extract.counts()  # its profile does not map it
    assert [b.row_key for b in outcomes[code].validated.bad] == ["2"]
    assert outcomes[code].validated.bad[0].rules == ("timestamp_not_in_future",)
    with rt.store.connect() as conn:
        rows = conn.execute(select(mirror_table(HOLDS))).all()
    assert [(r.member, r.local_id, r.barcode) for r in rows] == [(code, "1", f"{code}0000001")]
    with holding(code):
        assert all(d.clean for d in reconcile_member(rt, rt.consortium.member(code), fix=False))


def test_the_built_in_entities_are_required_and_a_declared_one_may_be_optional(holds_profile):
    assert not is_optional("loans") and is_optional("holds")
    assert "holds" not in profile.load_profile("evergreen").entities

"""Weeks of random circulation across members, synced now and then: afterwards the central
store and every owner's ILS agree with where each book really is."""

from __future__ import annotations

import pytest

from circhub.simulator.verify import central_differences, ils_differences
from tests.helpers import koha_consortium, sync_cycle


@pytest.mark.parametrize("seed", [3, 19])
def test_sqlite_consortium_ends_in_agreement_with_the_desks(tmp_path, seed):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(5)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db",
                                    seed=seed, readers=8, items=15)
    for _ in range(3):
        world.play(days=4, actions_per_day=25)
        rt = sync_cycle(config)
    rt = sync_cycle(config)  # the last write-backs read back
    assert central_differences(world, rt.store) == []
    assert ils_differences(world) == []


def test_mariadb_members_and_postgres_store_end_in_agreement_with_the_desks(
        tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db() for _ in range(4)], pg_db(),
                                    seed=5, readers=8, items=12)
    for _ in range(3):
        world.play(days=4, actions_per_day=20)
        rt = sync_cycle(config)
    rt = sync_cycle(config)
    assert central_differences(world, rt.store) == []
    assert ils_differences(world) == []

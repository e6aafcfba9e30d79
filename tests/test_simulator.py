"""The simulator: deterministic for a seed, with real-looking, valid ID numbers."""

from __future__ import annotations

from circhub.domain.identity import IdStatus, check_id_number
from tests.helpers import koha_consortium


def _journal(tmp_path, name, seed):
    folder = tmp_path / name
    folder.mkdir()
    members = [f"sqlite:///{folder}/m{i}.db" for i in range(3)]
    world, _ = koha_consortium(folder, members, f"sqlite:///{folder}/c.db", seed=seed)
    world.play(days=3, actions_per_day=20)
    return world, [(a, b, m) for _, a, b, m in world.journal]


def test_the_same_seed_plays_the_same_circulation(tmp_path):
    assert _journal(tmp_path, "one", 4)[1] == _journal(tmp_path, "two", 4)[1]
    assert _journal(tmp_path, "three", 5)[1] != _journal(tmp_path, "four", 4)[1]


def test_seeded_readers_carry_valid_resident_id_numbers(tmp_path):
    world, _ = _journal(tmp_path, "ids", 4)
    assert all(check_id_number(p.id_number).status == IdStatus.VALID for p in world.people)


def test_the_play_includes_cross_returns_and_secondary_circulation(tmp_path):
    world, _ = _journal(tmp_path, "mix", 4)
    assert world.stats.cross_returns > 0 and world.stats.secondary_loans > 0

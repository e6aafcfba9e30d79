"""Reader figures of the central store match the same figures counted straight from the member
ILS databases: readers, readers with accounts at several members, readers who borrowed across
members, cross loans, cross loans per reader. Koha members on MariaDB, store on PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, union_all
from typer.testing import CliRunner

from circhub.simulator import koha
from circhub.tasks.readers.stats import ReaderStats, reader_stats
from tests.helpers import koha_consortium, sync_cycle


def _truth(world) -> ReaderStats:
    """Counted from each member's own tables, with the simulator's people for the homes."""
    home = {p.id_number: p.home for p in world.people}
    lent = []  # (lending member, barcode, reader's ID number)
    for code, desk in world.desks.items():
        parts = [select(t.c.borrowernumber, t.c.itemnumber) for t in (koha.issues,
                                                                     koha.old_issues)]
        rows = union_all(*parts).subquery()
        q = (select(koha.items.c.barcode, koha.borrowers.c.cardnumber)
             .join_from(rows, koha.items, koha.items.c.itemnumber == rows.c.itemnumber)
             .join(koha.borrowers, koha.borrowers.c.borrowernumber == rows.c.borrowernumber))
        with desk.engine.connect() as conn:
            # the hub's stand-in patron (a book lent again elsewhere) is nobody's loan here
            lent += [(code, barcode, card) for barcode, card in conn.execute(q) if card in home]
    away = [(m, card) for m, _, card in lent if m != home[card]]
    return ReaderStats(
        readers=len(world.people),
        readers_at_several_members=sum(1 for p in world.people if len(p.accounts) > 1),
        readers_borrowed_across=len({card for _, card in away}),
        loans_away_from_home=len(away),
        cross_loans=sum(1 for m, barcode, _ in lent if not barcode.startswith(m)),
    )


def test_reader_figures_match_the_members_own_tables(tmp_path, mariadb_db, pg_db):
    world, config = koha_consortium(tmp_path, [mariadb_db() for _ in range(4)], pg_db(),
                                    seed=31, readers=8, items=10, bad_readers=1)
    world.play(days=6, actions_per_day=30)

    rt = sync_cycle(config)

    figures, truth = reader_stats(rt.store), _truth(world)
    assert figures == truth
    assert figures.readers_borrowed_across > 3 and figures.cross_loans > 5
    assert figures.cross_loans_per_reader == truth.cross_loans / truth.readers_borrowed_across


def test_figures_can_be_bounded_to_loans_issued_in_a_window(tmp_path):
    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(3)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db",
                                    readers=6, items=8)
    world.play(days=4, actions_per_day=25)
    rt = sync_cycle(config)
    everything = reader_stats(rt.store)

    future = reader_stats(rt.store, since=datetime.now() + timedelta(days=1))
    split = world.clock - timedelta(days=2)
    before, after = reader_stats(rt.store, until=split), reader_stats(rt.store, since=split)

    assert (future.cross_loans, future.readers_borrowed_across) == (0, 0)
    assert future.readers == everything.readers  # people are not bounded by a loan window
    assert before.cross_loans + after.cross_loans == everything.cross_loans


def test_stats_command_prints_the_report_line(tmp_path):
    from circhub.cli import app

    members = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(3)]
    world, config = koha_consortium(tmp_path, members, f"sqlite:///{tmp_path}/c.db")
    world.play(days=3, actions_per_day=20)
    rt = sync_cycle(config)

    result = CliRunner().invoke(app, ["reader", "stats", "-c", str(config)],
                                env={"COLUMNS": "200"})

    assert result.exit_code == 0, result.output
    assert reader_stats(rt.store).line() in result.output

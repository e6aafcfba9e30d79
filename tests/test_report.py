"""The daily report: figures checked against the central store and the simulated world, plots
rendered to a folder and embedded in a markdown artifact."""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from datetime import date, datetime, timedelta

import matplotlib.image
import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from circhub.cli import app
from circhub.connections.runtime import open_runtime, upgrade_store
from circhub.domain.schema import loans, outbox, quarantine, sync_runs
from circhub.flows.report import markdown
from circhub.simulator.world import config_toml, member_specs
from circhub.tasks.reporting.plots import (
    all_pngs,
    backlog_bars,
    empty_sentences,
    freshness_bars,
    quarantine_bars,
)
from circhub.tasks.reporting.report import daily_figures
from circhub.tasks.reporting.status import Staleness
from tests.helpers import koha_consortium, sync_cycle

PLOTS = {"headline", "cross-loans-per-day", "book-flows", "writeback-backlog", "quarantine",
         "freshness"}
EMPTY_BACKLOG = PLOTS - {"writeback-backlog"}  # a sync pushes every write-back it owes


def _world(tmp_path, central: str, members: int = 4):
    urls = [f"sqlite:///{tmp_path}/m{i}.db" for i in range(members)]
    world, config = koha_consortium(tmp_path, urls, central, readers=8, items=10,
                                    bad_readers=2)
    world.play(days=6, actions_per_day=25)
    return world, config, sync_cycle(config)


def _direct(conn, sql: str):
    return conn.execute(text(sql)).all()


def test_daily_figures_match_counts_taken_directly_from_the_central_store(tmp_path, pg_db):
    world, config, rt = _world(tmp_path, pg_db())

    f = daily_figures(rt.store, rt.consortium, days=30)

    with rt.store.connect() as conn:
        cross = _direct(conn, "SELECT l.member, l.barcode, l.issued_at FROM loans l "
                              "JOIN items i ON i.barcode = l.barcode WHERE l.member <> i.owner")
        moved = _direct(conn, "SELECT member, return_member FROM loans WHERE returned_at IS NOT "
                              "NULL AND return_member IS NOT NULL AND return_member <> member")
        away = _direct(conn, "SELECT DISTINCT l.reader_key FROM loans l JOIN readers r ON "
                             "r.reader_key = l.reader_key WHERE l.member <> r.home_member")
        held = conn.execute(select(quarantine.c.rules)
                            .where(quarantine.c.released_at.is_(None))).scalars().all()
    h = f.headline
    assert h.cross_loans == len(cross) == world.stats.secondary_loans > 0
    assert h.cross_returns == len(moved) == world.stats.cross_returns > 0
    assert h.lent_again == len({b for _, b, _ in cross})
    assert h.cross_readers == len(away) > 0
    assert h.active_members == len({m for m, _, _ in cross} | {dst for _, dst in moved})
    assert f.flows == Counter(moved)
    per_day = Counter(issued.date() for _, _, issued in cross)
    assert dict(f.per_day) == {d: per_day.get(d, 0) for d, _ in f.per_day}
    assert sum(n for _, n in f.per_day) == len(cross)  # the world is younger than 30 days
    county = {m.code for m in rt.consortium.members if m.level == "county"}
    assert f.county_share() == pytest.approx(
        sum(1 for _, dst in moved if dst in county) / len(moved))
    assert f.quarantined.rows == len(held) == 2  # the two readers with mistyped ID numbers
    assert f.quarantined.by_rule == {"id_number_valid: id_check_digit": 2}
    assert [r for rules in held for r in rules] == ["id_number_valid", "id_check_digit"] * 2
    assert [s.code for s in f.freshness] == [m.code for m in rt.consortium.members]


def test_plots_render_as_png_images_of_the_figures(tmp_path):
    world, config, rt = _world(tmp_path, f"sqlite:///{tmp_path}/central.db", members=3)

    pngs = all_pngs(daily_figures(rt.store, rt.consortium), Staleness())

    assert set(pngs) == EMPTY_BACKLOG
    for name, data in pngs.items():
        pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert pixels.shape[0] > 150 and pixels.shape[1] > 300, name
        assert pixels.std() > 0.05, f"{name} is blank"


@pytest.mark.usefixtures("prefect_server")
def test_daily_report_flow_saves_the_plots_and_embeds_them_in_a_markdown_artifact(tmp_path):
    from prefect.artifacts import Artifact

    from circhub.flows.report import daily_report

    world, config, rt = _world(tmp_path, f"sqlite:///{tmp_path}/central.db", members=3)

    result = daily_report(config=str(config), out_dir=str(tmp_path / "reports"))

    folder = tmp_path / "reports" / f"{date.today():%Y-%m-%d}"
    assert result["folder"] == str(folder)
    assert {p.stem for p in folder.glob("*.png")} == EMPTY_BACKLOG
    assert result["cross loans to date"] == world.stats.secondary_loans
    markdown = Artifact.get("daily-report").data
    images = dict(re.findall(r"## ([^\n]+)\n\n!\[[^]]*\]\(data:image/png;base64,([^)]+)\)",
                             markdown))  # section title -> embedded PNG
    assert len(images) == len(EMPTY_BACKLOG)
    assert "## Write-back backlog\n\nNo write-backs waiting" in markdown
    saved = {p.read_bytes() for p in folder.glob("*.png")}
    assert {base64.b64decode(b) for b in images.values()} == saved
    assert f"| cross returns to date | {world.stats.cross_returns:,} |" in markdown
    assert result["headline"][0].startswith(f"cross loans to date: {world.stats.secondary_loans}")
    assert "report.md" in {p.name for p in folder.iterdir()}


# -- 250 members: the least fresh first, quarantine by rule, backlog as a sentence or the top N

def _consortium_of(tmp_path, members: int):
    """A consortium of `members` whose store holds only what a test writes into it."""
    config = tmp_path / "consortium.toml"
    specs = member_specs(members)
    config.write_text(config_toml(specs, {code: f"sqlite:///{tmp_path}/{code}.db"
                                          for code, *_ in specs},
                                  f"sqlite:///{tmp_path}/central.db", "forty", demo=True))
    upgrade_store(config)
    return open_runtime(str(config))


def _synced_ago(rt, code: str, ago: timedelta) -> None:
    at = datetime.now() - ago
    with rt.store.begin() as conn:
        conn.execute(sync_runs.insert().values(member=code, started_at=at, finished_at=at,
                                               status="ok"))


def test_freshness_of_forty_members_lists_the_three_stale_first_and_at_most_n(tmp_path):
    rt = _consortium_of(tmp_path, 40)
    codes = [m.code for m in rt.consortium.members]
    never, late, later = codes[5], codes[20], codes[33]
    for code in codes:
        if code != never:
            _synced_ago(rt, code, timedelta(minutes=2))
    _synced_ago(rt, late, timedelta(hours=2))  # its latest good run is older: drop the recent
    _synced_ago(rt, later, timedelta(hours=5))
    with rt.store.begin() as conn:
        conn.execute(sync_runs.delete().where(sync_runs.c.member.in_((late, later)),
                                              sync_runs.c.finished_at > datetime.now()
                                              - timedelta(minutes=10)))

    bars = freshness_bars(daily_figures(rt.store, rt.consortium), Staleness(), n=10)

    assert len(bars.labels) == 10
    assert [label.split()[0] for label in bars.labels[:3]] == [never, later, late]
    assert bars.labels[0].endswith("(never synced)")
    assert bars.marked == [True] * 3 + [False] * 7
    assert bars.values == sorted(bars.values, reverse=True)
    assert bars.title == "Freshness: the 10 least fresh of 40 members; 3 stale"


def test_quarantine_counts_rows_under_each_rule_they_broke_and_says_so(tmp_path):
    world, config, rt = _world(tmp_path, f"sqlite:///{tmp_path}/central.db", members=3)
    with rt.store.begin() as conn:  # one of the two held readers also lacks its card number
        first = conn.execute(select(quarantine.c.id).order_by(quarantine.c.id)).scalars().first()
        conn.execute(update(quarantine).where(quarantine.c.id == first).values(
            rules=["id_number_valid", "id_check_digit", "card_number_present"]))

    bars = quarantine_bars(daily_figures(rt.store, rt.consortium), n=5)

    assert bars.labels == ["id_number_valid: id_check_digit", "card_number_present"]
    assert bars.values == [2, 1]
    assert bars.title == ("Rows in quarantine: 2, by rule broken; 1 rows broke several rules "
                          "and count under each")
    cli = CliRunner().invoke(app, ["quarantine", "--by-rule", "--json", "-c", str(config)])
    assert cli.exit_code == 0, cli.output  # the CLI's figure is the report's
    assert json.loads(cli.output) == {"rows": 2, "rows_breaking_several": 1, "by_rule": {
        "id_number_valid: id_check_digit": 2, "card_number_present": 1}}


def test_an_empty_quarantine_and_an_empty_backlog_are_one_sentence_each_not_a_chart(tmp_path):
    world, config, rt = _world(tmp_path, f"sqlite:///{tmp_path}/central.db", members=3)
    with rt.store.begin() as conn:
        conn.execute(update(quarantine).values(released_at=datetime.now()))

    f = daily_figures(rt.store, rt.consortium)

    assert quarantine_bars(f) is None and backlog_bars(f) is None
    assert set(empty_sentences(f)) == {"quarantine", "writeback-backlog"}
    assert set(all_pngs(f, Staleness())) == PLOTS - {"quarantine", "writeback-backlog"}
    report = markdown(f, {})
    assert "## Quarantine\n\nNothing in quarantine" in report


def test_a_backlog_shows_the_members_owed_most_first_and_no_more_than_n(tmp_path):
    rt = _consortium_of(tmp_path, 40)
    owed = {code: n for n, code in enumerate([m.code for m in rt.consortium.members][:12], 1)}
    with rt.store.begin() as conn:
        for code, n in owed.items():
            conn.execute(outbox.insert(), [
                _command(code, i, "dead" if n == 1 else "pending") for i in range(n)])

    bars = backlog_bars(daily_figures(rt.store, rt.consortium), n=5)

    most = sorted(owed, key=lambda c: -owed[c])[:5]
    assert [label.split()[0] for label in bars.labels] == most
    assert bars.values == [owed[c] for c in most]
    assert bars.title == ("Write-back backlog: 77 pending, 1 dead-lettered, at 12 members "
                          "(the 5 owed most)")


def test_headline_figures_compare_with_the_day_before_from_the_loans_times(tmp_path, pg_db):
    world, config, rt = _world(tmp_path, pg_db())
    now = datetime.now()
    old, recent = now - timedelta(days=3), now - timedelta(hours=2)
    with rt.store.begin() as conn:  # every loan days ago; then two cross loans and one return
        conn.execute(update(loans).values(issued_at=old))
        conn.execute(update(loans).where(loans.c.returned_at.is_not(None))
                     .values(returned_at=old + timedelta(hours=1)))
        cross = _direct(conn, "SELECT l.member, l.local_id FROM loans l JOIN items i ON "
                              "i.barcode = l.barcode WHERE l.member <> i.owner "
                              "ORDER BY l.member, l.local_id")
        moved = _direct(conn, "SELECT member, local_id FROM loans WHERE returned_at IS NOT "
                              "NULL AND return_member <> member ORDER BY member, local_id")
        returned = next(m for m in reversed(moved) if m not in cross[:2])
        for (member, local_id), column in [(cross[0], "issued_at"), (cross[1], "issued_at"),
                                           (returned, "returned_at")]:
            conn.execute(update(loans).where(loans.c.member == member,
                                             loans.c.local_id == local_id)
                         .values(**{column: recent}))

    f = daily_figures(rt.store, rt.consortium, now=now)

    change = {label: (value, delta) for label, value, delta in f.change.rows()}
    assert change["cross loans to date"] == (len(cross), 2)
    assert change["cross returns to date"] == (len(moved), 1)
    assert f.change.day_before.cross_loans == len(cross) - 2
    report = markdown(f, {})
    assert f"| cross loans to date | {len(cross):,} | +2 |" in report
    assert f"cross loans to date: {len(cross):,} (+2 since the day before)" in f.change.lines()


def _command(target: str, i: int, status: str) -> dict:
    return {"target": target, "command_key": f"close_loan:{target}:{i}", "kind": "close_loan",
            "barcode": f"{target}{i:07d}", "payload": {}, "status": status, "attempts": 0,
            "created_at": datetime.now()}

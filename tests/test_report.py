"""The daily report: figures checked against the central store and the simulated world, plots
rendered to a folder and embedded in a markdown artifact."""

from __future__ import annotations

import base64
import io
import re
from collections import Counter
from datetime import date

import matplotlib.image
import pytest
from sqlalchemy import text

from circhub.tasks.reporting.plots import all_pngs
from circhub.tasks.reporting.report import daily_figures
from circhub.tasks.reporting.status import Staleness
from tests.helpers import koha_consortium, sync_cycle

PLOTS = {"headline", "cross-loans-per-day", "book-flows", "writeback-backlog", "quarantine",
         "freshness"}


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
        held = _direct(conn, "SELECT member, entity FROM quarantine WHERE released_at IS NULL")
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
    assert f.quarantined == Counter(held) and sum(f.quarantined.values()) == 2
    assert [s.code for s in f.freshness] == [m.code for m in rt.consortium.members]


def test_plots_render_as_png_images_of_the_figures(tmp_path):
    world, config, rt = _world(tmp_path, f"sqlite:///{tmp_path}/central.db", members=3)

    pngs = all_pngs(daily_figures(rt.store, rt.consortium), Staleness())

    assert set(pngs) == PLOTS
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
    assert {p.stem for p in folder.glob("*.png")} == PLOTS
    assert result["cross loans to date"] == world.stats.secondary_loans
    markdown = Artifact.get("daily-report").data
    images = dict(re.findall(r"## ([^\n]+)\n\n!\[[^]]*\]\(data:image/png;base64,([^)]+)\)",
                             markdown))  # section title -> embedded PNG
    assert len(images) == len(PLOTS)
    saved = {p.read_bytes() for p in folder.glob("*.png")}
    assert {base64.b64decode(b) for b in images.values()} == saved
    assert f"| cross returns to date | {world.stats.cross_returns:,} |" in markdown
    assert "report.md" in {p.name for p in folder.iterdir()}

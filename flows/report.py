"""Daily report flow: the consortium's figures as plots, in the Prefect UI and in a folder.

The markdown artifact (key `daily-report`) embeds every PNG as a base64 data URI, so the report
reads in the UI with no file server; the same PNGs and a `report.md` linking them are written
to `<out_dir>/<date>/` for mail or an intranet page.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from circhub.connections.runtime import default_config_path, open_runtime
from circhub.flows.attempts import refuse_endless_attempts
from circhub.flows.naming import report_run_name
from circhub.tasks.reporting.plots import all_pngs, empty_sentences
from circhub.tasks.reporting.report import DailyFigures, daily_figures
from circhub.tasks.reporting.status import Staleness

REPORT_DIR_ENV = "CIRCHUB_REPORT_DIR"
TITLES = {"headline": "Headline", "cross-loans-per-day": "Cross loans per day",
          "book-flows": "Where books travel", "writeback-backlog": "Write-back backlog",
          "quarantine": "Quarantine", "freshness": "Freshness"}


def report_dir(config: str, out_dir: str | None) -> Path:
    chosen = out_dir or os.environ.get(REPORT_DIR_ENV)
    return Path(chosen) if chosen else Path(config).resolve().parent / "reports"


def markdown(f: DailyFigures, images: dict[str, str]) -> str:
    """The report as markdown; `images` maps each plot to its src (data URI or file name). A
    figure with nothing to draw is its sentence instead (`empty_sentences`)."""
    lines = [f"# {f.consortium}: daily report {f.at:%Y-%m-%d %H:%M}", "",
             "| figure | value | since the day before |", "| --- | --- | --- |"]
    lines += [f"| {label} | {value:,} | {change:+,} |" for label, value, change in f.change.rows()]
    lines += [f"| share of book movements reaching county libraries | "
              f"{f.county_share():.0%} | |", ""]
    sentences = empty_sentences(f)
    for key, title in TITLES.items():
        if key in images:
            lines += [f"## {title}", "", f"![{title}]({images[key]})", ""]
        elif key in sentences:
            lines += [f"## {title}", "", sentences[key], ""]
    return "\n".join(lines)


def save(folder: Path, f: DailyFigures, pngs: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, data in pngs.items():
        (folder / f"{key}.png").write_bytes(data)
    (folder / "report.md").write_text(markdown(f, {k: f"{k}.png" for k in pngs}))
    return folder


@flow(name="daily-report", flow_run_name=report_run_name, timeout_seconds=900)
def daily_report(config: str | None = None, days: int = 30, out_dir: str | None = None) -> dict:
    """Headline figures, cross loans per day, book flows, backlog, quarantine, freshness."""
    refuse_endless_attempts()
    config = config or default_config_path()
    rt = open_runtime(config)
    figures = daily_figures(rt.store, rt.consortium, days=days)
    pngs = all_pngs(figures, Staleness.from_env())
    folder = save(report_dir(config, out_dir) / f"{figures.at:%Y-%m-%d}", figures, pngs)
    uris = {k: "data:image/png;base64," + base64.b64encode(v).decode() for k, v in pngs.items()}
    create_markdown_artifact(markdown(figures, uris), key="daily-report",
                             description=f"{figures.consortium}: daily report (plots)")
    get_run_logger().info("daily report, plots saved in %s:\n%s", folder,
                          "\n".join(figures.change.lines()))
    return {"folder": str(folder), "headline": figures.change.lines(),
            **{label: value for label, value in figures.headline.rows()}}

"""The daily report's plots: one PNG per figure, drawn with matplotlib's Agg backend.

Agg draws to memory, so the report runs on a worker with no display. Each function takes the
figures computed by `circhub.tasks.reporting.report` and returns PNG bytes; nothing here queries
the store.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta

import matplotlib

matplotlib.use("Agg")  # before pyplot: workers have no display

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from circhub.tasks.reporting.report import DailyFigures, change_text  # noqa: E402
from circhub.tasks.reporting.status import (  # noqa: E402
    Staleness,
    least_fresh,
    stale_members,
)

BLUE, ORANGE, RED, GREY = "#2f6db3", "#e08a1e", "#c0392b", "#9aa5b1"
DPI = 90


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _counts_axis(ax, empty: bool, what: str) -> None:
    """Whole numbers on the count axis; an empty plot says so instead of showing bare axes."""
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if empty:
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, what, ha="center", va="center", transform=ax.transAxes, color=GREY)


def headline_png(f: DailyFigures) -> bytes:
    rows = f.change.rows()
    fig, axes = plt.subplots(1, len(rows), figsize=(12, 2.5))
    for ax, (label, value, change) in zip(axes, rows, strict=True):
        ax.axis("off")
        ax.text(0.5, 0.66, f"{value:,}", ha="center", fontsize=26, color=BLUE, weight="bold")
        ax.text(0.5, 0.42, change_text(change), ha="center", fontsize=8,
                color=BLUE if change else GREY)
        ax.text(0.5, 0.12, label, ha="center", fontsize=9, wrap=True)
    fig.suptitle(f"{f.consortium} — {f.at:%Y-%m-%d %H:%M} (changes: since 24 h before)",
                 fontsize=11)
    return _png(fig)


def per_day_png(f: DailyFigures) -> bytes:
    days = [d for d, _ in f.per_day]
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.bar(days, [n for _, n in f.per_day], color=BLUE)
    _counts_axis(ax, not any(n for _, n in f.per_day), "no cross loans in these days")
    ax.set_title("Cross loans per day")
    ax.set_ylabel("loans")
    fig.autofmt_xdate()
    return _png(fig)


LEVELS = ("province", "city", "county")
MAX_ROWS = 30  # beyond this a per-member plot is unreadable: fold or keep the worst


def _rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else len(LEVELS)


def _flow_grid(f: DailyFigures) -> tuple[list[str], list[list[int]], str]:
    """Member by member; a large consortium folds into regions (county share stays exact)."""
    if len(f.levels) <= MAX_ROWS:
        codes = sorted(f.levels, key=lambda c: (_rank(f.levels[c]), c))
        return codes, [[f.flows.get((s, d), 0) for d in codes] for s in codes], "member"
    names = sorted(set(f.regions.values()))
    grid = [[0] * len(names) for _ in names]
    for (src, dst), n in f.flows.items():
        grid[names.index(f.regions.get(src, src))][names.index(f.regions.get(dst, dst))] += n
    return names, grid, "region"


def flow_matrix_png(f: DailyFigures) -> bytes:
    labels, grid, unit = _flow_grid(f)
    size = max(5.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for tick in [*ax.get_xticklabels(), *ax.get_yticklabels()]:  # the network's reach
        tick.set_color(ORANGE if f.levels.get(tick.get_text()) == "county" else "black")
    top = max((max(row) for row in grid), default=0)
    for i, row in enumerate(grid):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, n, ha="center", va="center", fontsize=7,
                        color="white" if n > top / 2 else "black")
    ax.set_xlabel(f"returned at ({unit}; orange: county level)")
    ax.set_ylabel(f"lent by ({unit})")
    ax.set_title(f"Where books travel — {f.county_share():.0%} of movements reach county "
                 "libraries", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.7, label="books")
    return _png(fig)


@dataclass(frozen=True)
class Bars:
    """What a bar chart shows: labelled rows, worst or largest first, and a title that says
    how many rows are shown of how many."""

    title: str
    labels: list[str]
    values: list[float]
    marked: list[bool]  # drawn red: stale, never synced, dead-lettered


def freshness_bars(f: DailyFigures, rule: Staleness, n: int = MAX_ROWS) -> Bars:
    """The `n` least fresh members, worst first; stale and never-synced ones marked."""
    limit = _minutes(rule.limit)
    rows = least_fresh(f.freshness, n)
    stale = stale_members(f.freshness, rule)
    shown = (f"all {len(rows)} members" if len(rows) == len(f.freshness)
             else f"the {len(rows)} least fresh of {len(f.freshness)} members")
    # A member never synced has no lag: its bar is the longest drawn, past the stale line.
    never = max([2 * limit, *(_minutes(s.lag) for s in rows if s.lag is not None)])
    return Bars(f"Freshness: {shown}; {len(stale)} stale",
                [f"{s.code} {s.name}" + (" (never synced)" if s.lag is None else "")
                 for s in rows],
                [_minutes(s.lag) if s.lag is not None else never for s in rows],
                [s.stale(rule) for s in rows])


def backlog_bars(f: DailyFigures, n: int = MAX_ROWS) -> Bars | None:
    """The `n` members owed most write-backs (pending and dead-lettered), most first; None
    when nothing waits."""
    owed = sorted(f.backlog.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    if not owed:
        return None
    names = {s.code: s.name for s in f.freshness}  # names beside codes, as everywhere
    pending = sum(c["pending"] for c in f.backlog.values())
    dead = sum(c["dead"] for c in f.backlog.values())
    shown = "" if len(owed) <= n else f" (the {n} owed most)"
    return Bars(f"Write-back backlog: {pending:,} pending, {dead:,} dead-lettered, at "
                f"{len(owed)} members{shown}",
                [f"{code} {names.get(code, '')}".strip() for code, _ in owed[:n]],
                [sum(counts.values()) for _, counts in owed[:n]],
                [counts["dead"] > 0 for _, counts in owed[:n]])


def quarantine_bars(f: DailyFigures, n: int = MAX_ROWS) -> Bars | None:
    """The `n` rules broken by most rows in quarantine, most first; None when none is held."""
    q = f.quarantined
    if not q.rows:
        return None
    top = q.top(n)
    shown = "" if len(top) == len(q.by_rule) else f"; the {len(top)} broken most"
    several = (f"; {q.several:,} rows broke several rules and count under each"
               if q.several else "")
    return Bars(f"Rows in quarantine: {q.rows:,}, by rule broken{shown}{several}",
                [rule for rule, _ in top], [count for _, count in top], [False] * len(top))


def empty_sentences(f: DailyFigures) -> dict[str, str]:
    """A sentence for each figure with nothing to draw: an empty chart reads as broken."""
    found = {}
    if not f.backlog:
        found["writeback-backlog"] = ("No write-backs waiting: every member has been sent what "
                                      "it was owed.")
    if not f.quarantined.rows:
        found["quarantine"] = "Nothing in quarantine: every row synced passed its rules."
    return found


def bars_png(bars: Bars, unit: str, limit: float | None = None) -> bytes:
    """Horizontal bars, the first row on top; marked rows red."""
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.3 * len(bars.labels) + 1.2)))
    ax.barh(bars.labels, bars.values, color=[RED if m else BLUE for m in bars.marked])
    if limit is not None:
        ax.axvline(limit, color=RED, linestyle="--", label=f"stale after {limit:.0f} min")
        ax.legend(loc="lower right")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel(unit)
    ax.set_title(bars.title, fontsize=10)
    return _png(fig)


def freshness_png(f: DailyFigures, rule: Staleness) -> bytes:
    return bars_png(freshness_bars(f, rule),
                    "minutes since the last good sync (red: stale or never synced)",
                    limit=_minutes(rule.limit))


def all_pngs(f: DailyFigures, rule: Staleness) -> dict[str, bytes]:
    """Every figure that has something to draw (`empty_sentences` says the others)."""
    pngs = {"headline": headline_png(f), "cross-loans-per-day": per_day_png(f),
            "book-flows": flow_matrix_png(f)}
    backlog = backlog_bars(f)
    if backlog:
        pngs["writeback-backlog"] = bars_png(backlog, "write-backs (red: some dead-lettered)")
    quarantined = quarantine_bars(f)
    if quarantined:
        pngs["quarantine"] = bars_png(quarantined, "rows held")
    pngs["freshness"] = freshness_png(f, rule)
    return pngs


def _minutes(lag: timedelta) -> float:
    return lag.total_seconds() / 60

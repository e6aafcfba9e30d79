"""The daily report's plots: one PNG per figure, drawn with matplotlib's Agg backend.

Agg draws to memory, so the report runs on a worker with no display. Each function takes the
figures computed by `circhub.tasks.reporting.report` and returns PNG bytes; nothing here queries
the store.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # before pyplot: workers have no display

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from circhub.tasks.reporting.report import DailyFigures  # noqa: E402
from circhub.tasks.reporting.status import Staleness  # noqa: E402

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
    rows = f.headline.rows()
    fig, axes = plt.subplots(1, len(rows), figsize=(12, 2.2))
    for ax, (label, value) in zip(axes, rows, strict=True):
        ax.axis("off")
        ax.text(0.5, 0.62, f"{value:,}", ha="center", fontsize=26, color=BLUE, weight="bold")
        ax.text(0.5, 0.18, label, ha="center", fontsize=9, wrap=True)
    fig.suptitle(f"{f.consortium} — {f.at:%Y-%m-%d %H:%M}", fontsize=11)
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


def backlog_png(f: DailyFigures) -> bytes:
    codes = sorted(f.backlog) or ["(none)"]
    pending = [f.backlog.get(c, {}).get("pending", 0) for c in codes]
    dead = [f.backlog.get(c, {}).get("dead", 0) for c in codes]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(codes, pending, color=BLUE, label="pending")
    ax.bar(codes, dead, bottom=pending, color=RED, label="dead-lettered")
    ax.set_title(f"Write-back backlog: {sum(pending)} pending, {sum(dead)} dead-lettered")
    _counts_axis(ax, not f.backlog, "no write-backs waiting")
    ax.legend()
    ax.tick_params(axis="x", rotation=90)
    return _png(fig)


def quarantine_png(f: DailyFigures) -> bytes:
    codes = sorted({m for m, _ in f.quarantined}) or ["(none)"]
    entities = sorted({e for _, e in f.quarantined}) or ["readers"]
    fig, ax = plt.subplots(figsize=(8, 3))
    bottom = [0] * len(codes)
    for entity, colour in zip(entities, [ORANGE, BLUE, GREY], strict=False):
        counts = [f.quarantined.get((c, entity), 0) for c in codes]
        ax.bar(codes, counts, bottom=bottom, color=colour, label=entity)
        bottom = [b + n for b, n in zip(bottom, counts, strict=True)]
    ax.set_title(f"Rows in quarantine: {sum(f.quarantined.values())}")
    _counts_axis(ax, not f.quarantined, "nothing in quarantine")
    ax.legend()
    ax.tick_params(axis="x", rotation=90)
    return _png(fig)


def freshness_png(f: DailyFigures, rule: Staleness) -> bytes:
    limit = rule.limit.total_seconds() / 60
    worst = sorted(f.freshness, key=lambda s: -s.lag.total_seconds() if s.lag else -1e12)
    rows = sorted(worst[:MAX_ROWS], key=lambda s: s.code)
    minutes = [s.lag.total_seconds() / 60 if s.lag else limit * 2 for s in rows]
    colours = [RED if s.stale(rule) else BLUE for s in rows]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.3 * len(rows) + 1)))
    ax.barh([s.code for s in rows], minutes, color=colours)
    ax.axvline(limit, color=RED, linestyle="--", label=f"stale after {limit:.0f} min")
    ax.invert_yaxis()
    ax.set_xlabel("minutes since last good sync (red: stale or never synced)")
    shown = "" if len(rows) == len(f.freshness) else f" (the {len(rows)} least fresh)"
    ax.set_title(f"Freshness per member{shown}")
    ax.legend(loc="lower right")
    return _png(fig)


def all_pngs(f: DailyFigures, rule: Staleness) -> dict[str, bytes]:
    return {"headline": headline_png(f), "cross-loans-per-day": per_day_png(f),
            "book-flows": flow_matrix_png(f), "writeback-backlog": backlog_png(f),
            "quarantine": quarantine_png(f), "freshness": freshness_png(f, rule)}

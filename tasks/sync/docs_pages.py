"""Data Docs that render with no network: circhub's own index over Great Expectations' pages.

GX's Data Docs load Bootstrap, jQuery, bootstrap-table, Vega and Font Awesome from public CDNs
(its templates `render/view/templates/*.j2`), and its index page is a table filled in by
JavaScript: on a monitoring host without internet it is blank. The consortium's hosts rarely
reach the internet, so every page GX writes is made self-contained here (the CDN tags
removed, a small stylesheet of ours linked instead: GX's validation pages are rendered on the
server and read well without scripts), and the index is ours, plain HTML:

- one section per member, named by the run (`sync-consortium-2026-12-03T10:05`) and the
  member's code and name, with each entity's rules: rows checked, rows failing;
- links to GX's own pages of the member's validation runs (named by the run and the
  member, `run_name`), for the expectations in full.

Plain file writing, no GX import: the rows come from the sync's typed outcomes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STYLESHEET = "circhub-offline.css"
_REMOTE = re.compile(  # stylesheets, scripts and images (GX's logo) from elsewhere
    r"<link[^>]+href=\"https?://[^\"]*\"[^>]*>|<script[^>]+src=\"https?://[^\"]*\"[^>]*>"
    r"\s*</script>|<img[^>]+src=\"https?://[^\"]*\"[^>]*>", re.I)
_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.2em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.failed { color: #b00020; font-weight: 600; }
.ok { color: #1b7f3b; }
nav, .navbar, .sidebar, .cta-footer { margin-bottom: 1em; }
img { max-height: 2em; }
"""


@dataclass(frozen=True)
class MemberChecks:
    """One member's validation in a run: per entity and rule, rows checked and failing."""

    code: str
    name: str
    rows: list[dict]  # {"entity", "rule", "checked", "failed"}
    error: str = ""  # why it has no checks (unreachable) or its batch was refused


def run_name(run_label: str | None, member: str) -> str:
    """A member's validation run: `<run> <member>` (`sync-consortium-2026-12-03T10:05
    SC001`), or the member's code alone when no run is named (a check, a backfill chunk)."""
    return member if run_label is None else f"{run_label} {member}"


def make_offline(site: Path) -> int:
    """Every page of a built GX site without its CDN tags, our stylesheet linked instead;
    returns the pages changed."""
    (site / STYLESHEET).write_text(_CSS)
    changed = 0
    for page in site.rglob("*.html"):
        text = page.read_text()
        depth = len(page.relative_to(site).parts) - 1
        link = f'<link rel="stylesheet" href="{"../" * depth}{STYLESHEET}">'
        offline = _REMOTE.sub("", text).replace("</head>", f"{link}</head>", 1)
        if offline != text:
            page.write_text(offline)
            changed += 1
    return changed


def write_index(site: Path, run_label: str, members: Iterable[MemberChecks]) -> Path:
    """The site's index.html: a section per member, failing members first, each with the links
    to GX's pages of its own validation runs (named by the run and the member)."""
    members = sorted(members, key=lambda m: (not _failing(m), m.code))
    gx_pages = _gx_validation_pages(site)
    body = [f"<h1>Validation of {_e(run_label)}</h1>",
            f"<p>{len(members)} member(s); {sum(_failing(m) for m in members)} with failing "
            "rows or no checks. Rows that fail a rule are in quarantine "
            "(<code>circhub quarantine</code>).</p>"]
    body += [_section(m, _pages_of(m.code, gx_pages)) for m in members]
    shown = {p for m in members for p in _pages_of(m.code, gx_pages)}
    others = [p for p in gx_pages if p not in shown]
    if others:
        body.append("<h2>Great Expectations validation runs</h2><ul>" + "".join(
            f'<li><a href="{_e(p.href)}">{_e(p.suite)}, run {_e(p.run)}</a></li>'
            for p in others) + "</ul>")
    suites = sorted((site / "expectations").glob("*.html"))
    if suites:
        body.append("<h2>Expectation suites</h2><ul>" + "".join(
            f'<li><a href="expectations/{_e(p.name)}">{_e(p.stem)}</a></li>' for p in suites)
            + "</ul>")
    index = site / "index.html"
    index.write_text(_page(f"circhub validation: {run_label}", "\n".join(body)))
    return index


def _section(m: MemberChecks, gx_pages: list[GxPage]) -> str:
    title = f'<h2 id="{_e(m.code)}">{_e(m.code)} {_e(m.name)}</h2>'
    if m.error and not m.rows:
        return title + f'<p class="failed">not validated: {_e(m.error)}</p>'
    lines = "".join(
        f"<tr><td>{_e(r['entity'])}</td><td>{_e(r['rule'])}</td><td>{r['checked']}</td>"
        f"<td class=\"{'failed' if r['failed'] else 'ok'}\">{r['failed']}</td></tr>"
        for r in sorted(m.rows, key=lambda r: (r["entity"], -r["failed"], r["rule"])))
    note = f'<p class="failed">{_e(m.error)}</p>' if m.error else ""
    links = ("<p>Great Expectations runs: " + ", ".join(
        f'<a href="{_e(p.href)}">{_e(p.suite)} ({_e(p.run)})</a>' for p in gx_pages) + "</p>"
        if gx_pages else "<p>Every rule passed on its rows (no Great Expectations page kept "
                         "for it).</p>" if m.rows and not _failing(m) else "")
    return (title + note + "<table><tr><th>entity</th><th>rule</th><th>rows checked</th>"
            f"<th>rows failing</th></tr>{lines}</table>{links}")


def _failing(m: MemberChecks) -> bool:
    return bool(m.error) or any(r["failed"] for r in m.rows)


@dataclass(frozen=True)
class GxPage:
    """One of GX's validation pages: its suite (entity), run name and link from the index."""

    suite: str
    run: str
    href: str


def _gx_validation_pages(site: Path) -> list[GxPage]:
    """GX's validation pages of the site (`validations/<suite>/<run name>/...`)."""
    found = []
    for page in sorted((site / "validations").rglob("*.html")):
        suite, run = page.relative_to(site / "validations").parts[:2]
        found.append(GxPage(suite, run, page.relative_to(site).as_posix()))
    return found


def _pages_of(code: str, pages: list[GxPage]) -> list[GxPage]:
    """A member's pages: their run is named by the member (`run_name`)."""
    return [p for p in pages if p.run == code or p.run.endswith(f" {code}")]


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<link rel="stylesheet" href="{STYLESHEET}"></head><body>{body}</body></html>\n')


def _e(text: object) -> str:
    return html.escape(str(text))

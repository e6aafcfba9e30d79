"""`circhub demo`: a simulated consortium on SQLite, synced by the real flows, told in a few lines.

Phase 1 seeds the member ILS databases and plays two weeks of circulation, then syncs; phase 2
plays more days and syncs again; a last sync shows that nothing changes when nothing happened.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from rich.console import Console
from sqlalchemy import func, select

from circhub.connections.runtime import upgrade_store
from circhub.domain.schema import circulation_exceptions, loans
from circhub.simulator.world import World, config_toml, member_specs, mixed_world


@dataclass(frozen=True)
class DemoSize:
    members: int = 12
    readers: int = 40
    items: int = 120
    days: int = 14
    actions: int = 40
    seed: int = 7


# With a PostgreSQL server at hand the demo mixes ILS kinds: Evergreen members on PostgreSQL
# and Polaris-style members reached over ODBC. Without one it stays all-embedded (Koha/SQLite).
DEMO_PG = os.environ.get("CIRCHUB_DEMO_PG_URL",
                         "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MIXED = {"MY001": "evergreen", "DY001": "evergreen", "CQ003": "polaris", "CQ004": "polaris"}
PREFIX_ENV = "CIRCHUB_DEMO_DB_PREFIX"


def database_prefix(folder: Path) -> str:
    """The demo's PostgreSQL databases are named for the checkout's demo folder
    (`circhub_demo_<8 hex of its path>_`), or `CIRCHUB_DEMO_DB_PREFIX`: two people running
    the demo against one server each drop and recreate only their own."""
    given = os.environ.get(PREFIX_ENV)
    if given:
        return given
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    return f"circhub_demo_{digest}_"


def _postgres_database(name: str, odbc: bool) -> str | None:
    """A fresh demo database on the local PostgreSQL, or None when there is none to use.
    `name` is this checkout's own (`database_prefix`): only its connections are ended."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    try:
        admin = create_engine(DEMO_PG, isolation_level="AUTOCOMMIT",
                              connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception:  # noqa: BLE001 - no server, no rights: the demo stays embedded
        return None
    url = make_url(DEMO_PG).set(database=name)
    if odbc:
        url = url.set(drivername="postgresql+pyodbc", query={"driver": "PostgreSQL Unicode"})
    return url.render_as_string(hide_password=False)


def _odbc_ready() -> bool:
    try:
        import pyodbc

        return any("PostgreSQL" in d for d in pyodbc.drivers())
    except Exception:  # noqa: BLE001 - no unixODBC: no Polaris-style members
        return False


def member_databases(folder: Path, size: DemoSize) -> tuple[list[tuple[str, str]], dict]:
    """(profile, URL) per member: Koha on SQLite files, and where possible the mixed kinds."""
    specs = member_specs(size.members)
    odbc = _odbc_ready()
    prefix = database_prefix(folder)
    members, profiles = [], {}
    for code, *_ in specs:
        kind = MIXED.get(code, "koha")
        url = None
        if kind == "evergreen" or (kind == "polaris" and odbc):
            url = _postgres_database(f"{prefix}{code.lower()}", odbc=kind == "polaris")
        if url is None:
            kind, url = "koha", f"sqlite:///{(folder / f'{code}.db').resolve()}"
        members.append((kind, url))
        profiles[code] = kind
    return members, profiles


def build_world(folder: Path, size: DemoSize) -> tuple[World, Path]:
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "members").mkdir(parents=True)
    start = datetime.now().replace(microsecond=0) - timedelta(days=2 * size.days + 2)
    members, profiles = member_databases(folder / "members", size)
    world = mixed_world(members, size.seed, start)
    world.seed(size.readers, size.items, bad_readers=3)
    central = f"sqlite:///{(folder / 'circhub.db').resolve()}"
    config = folder / "consortium.toml"
    urls = {code: url for code, (_, url) in zip(world.desks, members, strict=True)}
    config.write_text(config_toml(member_specs(size.members), urls, central,
                                  "Sichuan-Chongqing reading one-card (simulated)", demo=True,
                                  profiles=profiles))
    upgrade_store(config)  # the demo makes its store; a process start only checks it
    return world, config


def run_sync(config: Path) -> dict:
    """The consortium sync flow's per-member rows (its summary table), whatever its state."""
    from circhub.flows.summary import run_rows
    from circhub.flows.sync import sync_consortium

    state = sync_consortium(config=str(config), return_state=True)
    rows = run_rows(state)
    if rows is None:
        raise RuntimeError(f"the sync failed: {state.message}")
    return rows


def totals(rows: dict) -> dict[str, int]:
    out = {"members": 0, "failed": 0, "events": 0, "commands": 0, "pushed": 0,
           "quarantined": 0}
    for row in rows.values():
        out["members"] += 1
        out["failed"] += row["status"] != "ok"
        out["events"] += row["events"]
        out["commands"] += row["write-backs owed"]
        out["pushed"] += row["pushed"]
        out["quarantined"] += sum(v for k, v in row.items() if k.endswith(" quarantined"))
    return out


def journey(store, world: World) -> tuple[str, list[tuple[datetime, str, str]]] | None:
    """A book lent at home, returned elsewhere and lent again there (secondary circulation),
    told from the hub's loans: each loan's start, and its end where the hub settled it.

    Not from the raw event log: with fourteen days between the demo's syncs, a book comes home
    before the hub has closed its first loan at the owner, and the owner's own check-in then
    closes that loan late, at home; the hub's loan row keeps the cross return it saw."""
    with store.connect() as conn:
        rows = conn.execute(
            select(loans.c.barcode, loans.c.member, loans.c.issued_at, loans.c.returned_at,
                   loans.c.return_member).order_by(loans.c.barcode, loans.c.issued_at)).all()
    by_barcode: dict[str, list] = {}
    for r in rows:
        by_barcode.setdefault(r.barcode, []).append(r)
    for barcode, lent in by_barcode.items():
        first, *later = lent
        if (first.member == world.books[barcode].owner and later
                and first.return_member not in (None, first.member)
                and later[0].member == first.return_member):
            return barcode, _loan_steps(lent)
    return None


def _loan_steps(lent: list) -> list[tuple[datetime, str, str]]:
    """(when, what, where), a return before a loan made at the same instant."""
    steps = [(r.issued_at, 1, "lent at", r.member) for r in lent]
    steps += [(r.returned_at, 0, "returned at", r.return_member or r.member) for r in lent
              if r.returned_at is not None]
    return [(at, verb, where) for at, _, verb, where in sorted(steps)]


def tell(console: Console, folder: Path, size: DemoSize) -> None:
    """The story, a line as each step ends (a sync of 12 members takes a while on two cores:
    the reader sees where it is instead of a minute of silence)."""
    console.print(f"[bold]circhub demo[/] — {size.members} simulated member libraries, "
                  f"seed {size.seed}; creating their databases ...")
    world, config = build_world(folder, size)
    names = {code: spec[1] for code, spec in world.specs.items()}
    kinds: dict[str, int] = {}
    for desk in world.desks.values():
        kinds[desk.kind] = kinds.get(desk.kind, 0) + 1
    console.print(f"  members: {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}")
    for label in ("sync 1", "sync 2"):
        world.play(size.days, size.actions)
        console.print(f"  played {size.days} days at the desks; {label} running ...")
        _tell_sync(console, label, totals(run_sync(config)))
    console.print("  sync 3 running (nothing new at the desks) ...")
    third = totals(run_sync(config))
    s = world.stats
    console.print(f"  sync 3 (nothing new at the desks): {third['events']} events, "
                  f"{third['commands']} write-backs — a re-run changes nothing")
    console.print(f"  simulated {2 * size.days} days at the desks: {s.loans} loans, "
                  f"{s.returns} returns, {s.renewals} renewals")
    from circhub.connections.runtime import open_runtime

    rt = open_runtime(str(config))
    _tell_headline(console, rt.store)
    _tell_store(console, rt.store)
    _tell_journey(console, rt.store, world, names)
    console.print(f"  config: {config}   central store: {folder / 'circhub.db'}")
    console.print(f"  the CLI on the demo: [bold]export CIRCHUB_CONFIG={config.resolve()}[/], "
                  "then `circhub status`, `circhub outbox exceptions`, `circhub books`")
    console.print("  Prefect UI: [bold]make serve[/] then open http://127.0.0.1:4200 (the demo's "
                  "runs are in its history: both keep Prefect under var/prefect)")


def _tell_sync(console: Console, label: str, t: dict) -> None:
    console.print(f"  {label}: {t['members'] - t['failed']}/{t['members']} members synced, "
                  f"{t['events']} circulation events, {t['commands']} write-backs queued, "
                  f"{t['pushed']} pushed to owning libraries")


def _tell_journey(console: Console, store, world: World, names: dict) -> None:
    found = journey(store, world)
    if not found:
        return
    barcode, evs = found
    owner = world.books[barcode].owner
    console.print(f"  one book's journey: {barcode} (owner {names[owner]})")
    for at, verb, where in evs:
        console.print(f"     {at:%Y-%m-%d %H:%M}  {verb} {names[where]}")
    console.print(f"     owner's ILS now shows: {_owner_view(world, barcode, names)}")


def _tell_headline(console: Console, store) -> None:
    """The daily report's headline figures, from the report's own definitions."""
    from circhub.tasks.reporting.report import headline

    console.print("  in the central store: " + "; ".join(
        f"{label} {value}" for label, value in headline(store).rows()))


def _tell_store(console: Console, store) -> None:
    from circhub.tasks.reporting.bookflow import book_flow
    from circhub.tasks.reporting.report import quarantine_by_rule, writebacks_by_status

    statuses = writebacks_by_status(store)
    away = sum(f.away_now() for f in book_flow(store).values())
    held = quarantine_by_rule(store)
    with store.connect() as conn:
        open_exceptions = dict(conn.execute(
            select(circulation_exceptions.c.reason, func.count())
            .where(circulation_exceptions.c.status == "open")
            .group_by(circulation_exceptions.c.reason)).all())
    console.print(f"  write-backs: {statuses.get('applied', 0)} applied, "
                  f"{statuses.get('pending', 0)} pending, {statuses.get('dead', 0)} dead; "
                  f"{away} books are held away from their owner now")
    shown = ", ".join(f"{r} ×{n}" for r, n in held.top(len(held.by_rule))) or "none"
    console.print(f"  quarantined rows: {held.rows} ({shown}) — `circhub quarantine` lists them")
    exceptions = ", ".join(f"{r} ×{n}" for r, n in sorted(open_exceptions.items())) or "none"
    console.print(f"  open circulation exceptions: {sum(open_exceptions.values())} "
                  f"({exceptions}) — `circhub outbox exceptions` lists them")


def _owner_view(world: World, barcode: str, names: dict) -> str:
    owner = world.books[barcode].owner
    view = world.desks[owner].item_view(barcode)
    where = names.get(view["holding"], view["holding"])
    if view["onloan"]:
        return f"held by {where}, on loan there until {view['onloan']}"
    return f"on the shelf at {where}"

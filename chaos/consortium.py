"""The consortium a schedule runs against: four members of three ILS kinds on the harness's own
servers, a central store on a server of its own, and the world that knows the truth.

Koha (two members) on MariaDB, Evergreen on PostgreSQL, the Polaris-style schema on
PostgreSQL reached through pyodbc: the members' PostgreSQL is not the central store's, so the
central store can be killed without taking members down, and the other way round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from circhub.simulator.world import DESKS, World, config_toml, member_specs

# (profile, server): the server names are the Harness's.
KINDS = (("koha", "mariadb"), ("evergreen", "members_pg"), ("polaris", "members_odbc"),
         ("koha", "mariadb"))
READERS, ITEMS = 5, 8
# Write-back retries quick enough for a schedule to converge in seconds: the backoff is a
# setting, and the rule it follows is the production one.
SETTINGS = {"writeback_backoff_seconds": 1.0, "writeback_backoff_cap_seconds": 4.0,
            "writeback_max_attempts": 12, "data_docs_dir": ""}


class ChaosWorld(World):
    """The world on the wall clock: a desk action happens now, so the times a desk writes
    and the ones its database stamps agree, and loans are never dated in the future however
    long a campaign runs. One action a second at most: the ILS keep whole seconds, and two
    actions on one book in one second would be one instant to them."""

    def tick(self, minutes: int = 1) -> datetime:
        now = datetime.now().replace(microsecond=0)
        while now <= self.clock:
            time.sleep(0.05)
            now = datetime.now().replace(microsecond=0)
        self.clock = now
        return now


@dataclass
class Consortium:
    world: ChaosWorld
    config: Path
    databases: dict[str, tuple[str, str]]  # member code -> (server name, database name)
    central: str  # the central store's database name


def member_codes() -> list[str]:
    return [spec[0] for spec in member_specs(len(KINDS))]


def server_of(code: str) -> str:
    """The harness server a member's database lives on."""
    server = dict(zip(member_codes(), (s for _, s in KINDS), strict=True))[code]
    return "members_pg" if server == "members_odbc" else server


def build(folder: Path, servers: dict, seed: int, tag: str,
          hub_ports: dict[str, int] | None = None) -> Consortium:
    """Fresh member databases and central store on `servers` (the Harness's), seeded. The
    hub reaches a member through `hub_ports[code]` where given (a chaos/links.py relay); its
    desks always reach their server directly."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = member_specs(len(KINDS))
    urls, hub_urls, databases = {}, {}, {}
    for (code, *_), (_, server) in zip(specs, KINDS, strict=True):
        name = f"chaos_{tag}_{code.lower()}"
        urls[code] = _member_url(servers, server, name)
        port = (hub_ports or {}).get(code)
        hub_urls[code] = (make_url(urls[code]).set(port=port).render_as_string(
            hide_password=False) if port else urls[code])
        databases[code] = (server, name)
    start = datetime.now().replace(microsecond=0) - timedelta(days=7)
    import circhub.connections.odbc  # noqa: F401 - registers postgresql+pyodbc://

    # pre-ping: a desk's pooled connections die with its server, and staff just log in again
    desks = {code: DESKS[kind](create_engine(urls[code], pool_pre_ping=True), code)
             for code, (kind, _) in zip(urls, KINDS, strict=True)}
    world = ChaosWorld(desks, specs, seed, start)
    world.seed(READERS, ITEMS)
    central = f"chaos_{tag}_central"
    config = folder / "consortium.toml"
    config.write_text(_with_settings(config_toml(
        specs, hub_urls, servers["central"].create_database(central), f"chaos {tag}", demo=True,
        profiles={code: kind for code, (kind, _) in zip(urls, KINDS, strict=True)},
        constants=world.member_constants())))
    from circhub.connections.runtime import upgrade_store

    upgrade_store(config)
    return Consortium(world, config, databases, central)


def _member_url(servers: dict, server: str, name: str) -> str:
    if server == "members_odbc":
        url = make_url(servers["members_pg"].create_database(name))
        return url.set(drivername="postgresql+pyodbc",
                       query={"driver": "PostgreSQL Unicode"}).render_as_string(
                           hide_password=False)
    return servers[server].create_database(name)


def _with_settings(toml: str) -> str:
    lines = "".join(f"{k} = {v!r}\n" for k, v in SETTINGS.items())
    return toml.replace("[consortium]\n", "[consortium]\n" + lines, 1)


def drop(consortium: Consortium, servers: dict) -> None:
    """Its databases dropped, so a long campaign does not fill the disk."""
    for desk in consortium.world.desks.values():
        desk.engine.dispose()
    names = [(server_of(code), name) for code, (_, name) in consortium.databases.items()]
    for server, name in names + [("central", consortium.central)]:
        engine = create_engine(servers[server].admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            if server != "mariadb":
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()

"""The bench's peer: dlt loading the same items into a PostgreSQL central database.

Run by .venv-peer/bin/python (`make peer`), never in circhub's venv, so it imports nothing of
circhub. One load of the source's `items` table, the columns circhub reads (given with
--columns, as bench.sources.COLUMNS), through `dlt.sources.sql_database.sql_table` with the
pyarrow or connectorx backend, write_disposition="merge" on primary key itemnumber, into the
dataset `peer` of the central database. dlt's own defaults otherwise (chunk_size 50,000, its
normalize and load workers, its merge strategy for postgres).

Timed: making the resource (it reflects the source table) and `pipeline.run` (extract,
normalize, load). Not timed: importing dlt and creating the pipeline (`setup_seconds`, said
apart). A fresh pipelines_dir in a temp directory, so no run sees another's state (removed
after the run: dlt keeps each load package there).
Prints one JSON line: rows, seconds, rows_s, the seconds of each step, and the versions.

    python bench/peer_dlt.py SOURCE_URL CENTRAL_URL {pyarrow,connectorx} N --columns a,b,...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

# Before dlt is imported: its anonymous telemetry would try to reach the network.
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"

DATASET = "peer"
TABLE = "items"


def source_url(url: str) -> str:
    """The bench's SQLAlchemy URL with a driver installed in .venv-peer: pymysql for MariaDB
    as given; psycopg2 (dlt's postgres extra) in place of psycopg 3 for PostgreSQL. The
    connectorx backend takes the same URL: dlt drops the driver part for it."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return u.set(drivername=PEER_DRIVERS[u.get_backend_name()]).render_as_string(
        hide_password=False)


# The SQLAlchemy driver .venv-peer has for each source database (circhub's backend records
# are not importable here: this runs without circhub).
PEER_DRIVERS = {"postgresql": "postgresql+psycopg2", "mysql": "mysql+pymysql",
                "mariadb": "mariadb+pymysql"}


def libpq_url(url: str) -> str:
    """The central database as a plain postgresql:// URL."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def destination_url(url: str) -> str:
    """dlt's postgres credentials require a password; the bench's local server trusts
    127.0.0.1 and has none, so a placeholder stands in (the server does not ask for it)."""
    from sqlalchemy.engine import make_url

    u = make_url(libpq_url(url))
    return (u if u.password else u.set(password="unused")).render_as_string(hide_password=False)


def load(source: str, central: str, backend: str, columns: list[str] | None,
         pipelines_dir: str) -> dict:
    t0 = time.perf_counter()
    import dlt
    from dlt.sources.sql_database import sql_table

    pipeline = dlt.pipeline(
        pipeline_name=f"circhub_peer_{backend}",
        destination=dlt.destinations.postgres(credentials=destination_url(central)),
        dataset_name=DATASET,
        pipelines_dir=pipelines_dir)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    items = sql_table(credentials=source_url(source), table=TABLE, backend=backend,
                      included_columns=columns, write_disposition="merge",
                      primary_key="itemnumber")
    info = pipeline.run(items)
    seconds = time.perf_counter() - t0
    info.raise_on_failed_jobs()
    return {"seconds": seconds, "setup_seconds": setup, "steps": _step_seconds(pipeline),
            "dlt": dlt.__version__}


def _step_seconds(pipeline) -> dict:
    """extract / normalize / load seconds from the run's trace (dlt's own timing)."""
    trace = pipeline.last_trace
    return {s.step: (s.finished_at - s.started_at).total_seconds() for s in trace.steps
            if s.step in ("extract", "normalize", "load")}


def merged_rows(central: str) -> int:
    import psycopg2

    with psycopg2.connect(libpq_url(central)) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT count(*), count(DISTINCT itemnumber) FROM "{DATASET}"."{TABLE}"')
        rows, keys = cur.fetchone()
    if rows != keys:
        raise SystemExit(f"peer_dlt: {rows:,} rows but {keys:,} item keys: not merged on "
                         "itemnumber")
    return rows


def versions() -> dict:
    import connectorx
    import pyarrow

    return {"connectorx": connectorx.__version__, "pyarrow": pyarrow.__version__}


def main(argv: list[str]) -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("source")
    args.add_argument("central")
    args.add_argument("backend", choices=["pyarrow", "connectorx"])
    args.add_argument("rows", type=int)
    args.add_argument("--columns", help="comma-separated; the whole table when left out")
    a = args.parse_args(argv)
    columns = a.columns.split(",") if a.columns else None
    with tempfile.TemporaryDirectory(prefix="circhub-peer-dlt-") as pipelines_dir:
        result = load(a.source, a.central, a.backend, columns, pipelines_dir)
    rows = merged_rows(a.central)
    if rows != a.rows:  # a load that moved fewer (or more) rows is no figure to compare
        raise SystemExit(f"peer_dlt: {a.backend} left {rows:,} rows in {DATASET}.{TABLE}, "
                         f"expected {a.rows:,}")
    print(json.dumps({"backend": a.backend, "rows": rows, "rows_s": rows / result["seconds"],
                      **result, **versions(), "columns": columns or "all"}))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Arrow-native bulk reads, for the loads that read whole ranges (a backfill's reader process,
reconcile's full pass): connectorx reads a member's rows into Arrow record batches in Rust,
where the driver path builds a Python tuple per row and pandas a frame of them. 500,000 Koha
items here: 0.4 s from MariaDB or PostgreSQL through connectorx, against ~1 s (PostgreSQL)
and ~3 s (MariaDB) through the drivers.

Which members: those whose backend record names an `arrow_scheme` (PostgreSQL over psycopg,
MySQL and MariaDB). SQLite members and members over ODBC (Polaris-style, SQL Server) keep the
driver path, as do a sync's small deltas and every write-back.

connectorx takes no bound parameters, so the entity query is rendered with its values
inlined (`literal_sql`): the window's two datetimes and the profile's constants, which come
from the consortium's own config, never from a member's rows. They are written here, not by
SQLAlchemy's literal rendering, whose escaping of a backslash depends on what a dialect
learnt from a live connection.

MySQL and MariaDB columns are read as text (`CAST(... AS CHAR)`): connectorx cannot hold
Koha's zero dates ('0000-00-00': it panics) nor a bare `NULL AS title` column, and a
profile's columns carry no SQL type to tell those from the rest; `coerce_types` types the
text to the values the driver path gets (whose pymysql reader takes times as text too).

connectorx opens a second session on the member for part of each read (seen in MariaDB's
session list: two per window), which the source-connection limit does not count: that is
why the Arrow reader is not the default (`bulk_reader`).

A read that fails, connectorx's panic included, raises ArrowReadFailed; the read is then made
again through the driver (`circhub.tasks.loads.member_rows`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal

import pandas as pd
from sqlalchemy import CHAR, Select, cast, literal_column, null, select
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter

from circhub.connections.backends import Backend, backend_of_url


class ArrowReadFailed(RuntimeError):
    """connectorx could not read the query (a type it cannot hold, a refused connection)."""


def arrow_backend(url: str) -> Backend | None:
    """The member's backend record when connectorx can read it, else None."""
    backend = backend_of_url(url)
    return backend if backend.arrow_scheme else None


def arrow_url(url: str, backend: Backend) -> str:
    """The member's URL as connectorx takes it (its scheme instead of SQLAlchemy's dialect and
    driver; password kept: it goes to connectorx, never to a log)."""
    return make_url(url).set(drivername=backend.arrow_scheme).render_as_string(
        hide_password=False)


def literal_sql(query: Select, dialect: Dialect) -> str:
    """The query as SQL text with its values inlined (`sql_literal`). Raises ArrowReadFailed
    for a value that has no literal both MySQL and PostgreSQL read the same way."""
    def inlined(element):
        if isinstance(element, BindParameter):
            return null() if element.value is None else literal_column(sql_literal(
                element.value))
        return None

    query = visitors.replacement_traverse(query, {}, inlined)
    return str(query.compile(dialect=dialect))


def sql_literal(value) -> str:
    """One value as a SQL literal. Text only where quoting it is the same on every backend:
    a backslash means an escape to MySQL (by default) and itself to PostgreSQL, so a value
    with one is refused, and its window read through the driver, which binds it."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return f"'{value:%Y-%m-%d %H:%M:%S.%f}'"
    if isinstance(value, date) and not isinstance(value, datetime):
        return f"'{value:%Y-%m-%d}'"
    if isinstance(value, str) and "\\" not in value and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    raise ArrowReadFailed(f"a query value of type {type(value).__name__} the Arrow reader "
                          "does not inline")


def arrow_query(query: Select, order: Sequence[str], text_casts: bool) -> Select:
    """The entity query as connectorx should read it: where the backend asks
    (`arrow_text_casts`), every column as text (the time columns for their zero dates, and
    the profile's columns, untyped, cannot be told from a bare NULL), ordered again by
    `order` outside (a derived table's ORDER BY may be dropped by MariaDB)."""
    if not text_casts:
        return query
    sub = query.order_by(None).subquery("delta")
    columns = [cast(c, CHAR).label(c.name) for c in sub.c]
    return select(*columns).order_by(*(sub.c[name] for name in order))


def arrow_frames(url: str, backend: Backend, sql: str, columns: Sequence[str],
                 chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The query's rows as frames of `chunk_rows` (the last one shorter), named `columns`,
    streamed: connectorx hands record batches over as it reads, so memory follows the chunk,
    not the window. Raises ArrowReadFailed, however connectorx failed."""
    import pyarrow as pa

    pending: list = []
    held = 0
    for batch in _batches(url, backend, sql, chunk_rows):
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending)
            chunk = _frame(table.slice(0, chunk_rows), columns)
            rest = table.slice(chunk_rows)
            pending, held = rest.to_batches(), rest.num_rows
            del table, rest  # while the caller holds the chunk, only the rows after it
            yield chunk
            del chunk
    if held:
        yield _frame(pa.Table.from_batches(pending), columns)


def _batches(url: str, backend: Backend, sql: str, chunk_rows: int):
    import connectorx

    reader = None
    try:
        reader = connectorx.read_sql(arrow_url(url, backend), sql, return_type="arrow_stream",
                                     batch_size=chunk_rows,
                                     pre_execution_query=list(backend.arrow_setup) or None)
        yield from reader
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - connectorx panics as a BaseException
        raise ArrowReadFailed(_first_line(exc, url)) from None
    finally:
        # Its resources given back as soon as the read ends, not when its last batch is
        # collected (this does not stop connectorx's second session during a read: see above).
        if reader is not None:
            reader.close()


def _first_line(exc: BaseException, url: str) -> str:
    """What went wrong, in a line, without the member's password (connectorx may quote its
    connection string)."""
    text = (str(exc).splitlines() or [""])[0][:300]
    password = make_url(url).password
    if password:
        text = text.replace(str(password), "***")
    return f"{type(exc).__name__}: {text}"


def _frame(table, columns: Sequence[str]) -> pd.DataFrame:
    """A chunk as `coerce_types` takes it, named by the entity's fields: dates as Python
    dates, as the drivers hand them over; text in pandas' pyarrow-backed string type, which
    wraps the Arrow column as it is (pandas' Python-string type would convert and check
    every value: 0.12 s against 0.01 s for 100,000 items). Raises ArrowReadFailed for a
    column whose values would differ from the driver's: a DECIMAL (connectorx widens it to
    10 digits after the point, where the driver keeps the column's own) or a time of day."""
    import pyarrow as pa

    for name, arrow_type in zip(columns, table.schema.types, strict=True):
        if pa.types.is_decimal(arrow_type) or pa.types.is_time(arrow_type):
            raise ArrowReadFailed(f"column {name} is {arrow_type}, which the Arrow reader "
                                  "does not give as the driver does")
    frame = table.to_pandas(date_as_object=True, types_mapper=_ARROW_TEXT.get)
    frame.columns = list(columns)
    return frame


def _arrow_text():
    import pyarrow as pa

    text = pd.StringDtype("pyarrow")
    return {pa.string(): text, pa.large_string(): text}


_ARROW_TEXT = _arrow_text()

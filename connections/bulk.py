"""Set-based upserts into the central store, the fast way its backend offers (the flags of its
record in `circhub.connections.backends`).

PostgreSQL: COPY the batch into a temporary staging table, then one
`INSERT ... SELECT ... ON CONFLICT DO UPDATE ... WHERE changed RETURNING key` (~180 k rows/s
here, against ~75 k for a batched executemany); below COPY_FROM_ROWS rows (a sync's usual
batch) the same INSERT reading the rows from one JSON parameter. SQLite (the demo), or any
backend without those flags, gets a multi-row INSERT. All return the keys of the rows that were
inserted or actually changed, so the caller knows what is new without reading anything back.
A backfill's new rows are COPYed straight into their table (`copy_frame`).

Rows come as dicts (small batches) or as a DataFrame (a backfill's chunk): a frame is turned
into plain Python values column by column and written as rows, with no dict per row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Table

from circhub.connections.backends import backend_of
from circhub.connections.store import upsert_insert
from circhub.domain.prepare import missing

COPY_FROM_ROWS = 1000  # below this, the staging table's DDL costs more than COPY saves


def bulk_upsert(conn: Connection, table: Table, rows: list[dict], keys: Sequence[str],
                update: Sequence[str] = (), changed: str | None = None) -> list[tuple]:
    """Insert rows; on a key conflict update `update` columns (only where `changed` differs),
    or leave the stored row alone when `update` is empty. Returns the keys written."""
    rows = _last_per_key(rows, keys)
    if not rows:
        return []
    columns = {c: [r[c] for r in rows] for c in rows[0]}
    return _write(conn, table, columns, keys, update, changed)


def bulk_upsert_frame(conn: Connection, table: Table, frame: pd.DataFrame,
                      keys: Sequence[str], update: Sequence[str] = (),
                      changed: str | None = None) -> list[tuple]:
    """`bulk_upsert` for a DataFrame whose columns are the table's."""
    frame = frame.drop_duplicates(subset=list(keys), keep="last")  # the last row wins
    if frame.empty:
        return []
    return _write(conn, table, python_columns(frame), keys, update, changed)


SMALL_FRAME_ROWS = 1000


def python_columns(frame: pd.DataFrame) -> dict[str, list]:
    """Each column as a list of plain Python values: datetimes, ints, None for missing.

    Few pandas calls per column: a sync merges ~20 small frames per member, where each pandas
    call's fixed cost (~0.1 ms) outweighs the rows; so a small frame's texts are checked for
    missing values in a list, a large one's (a backfill chunk) with one vectorised `isna`."""
    small = len(frame) < SMALL_FRAME_ROWS
    columns = {}
    for name in frame.columns:
        col = frame[name]
        kind = col.dtype.kind if isinstance(col.dtype, np.dtype) else None
        if kind == "M":  # naive times: numpy hands microsecond values over as datetimes, NaT
            columns[name] = col.to_numpy("datetime64[us]").astype(object).tolist()  # as None
        elif pd.api.types.is_datetime64_any_dtype(col):  # aware times
            columns[name] = [None if v is pd.NaT else v for v in col.dt.to_pydatetime()]
        elif kind is not None and kind in "biu":
            columns[name] = col.tolist()  # numpy bools and ints hold no missing value
        elif small:
            columns[name] = [None if missing(v) else v for v in col.tolist()]
        else:
            values, absent = col.tolist(), col.isna().to_numpy()
            columns[name] = ([None if m else v for v, m in zip(values, absent, strict=True)]
                             if absent.any() else values)
    return columns


def _write(conn, table, columns: dict[str, list], keys, update, changed) -> list[tuple]:
    # A sync's few rows per member: one statement with the rows beats creating a staging table.
    small = len(next(iter(columns.values()))) < COPY_FROM_ROWS
    backend = backend_of(conn.dialect)
    if small and backend.json_rows:
        writer = _postgres_json
    elif not small and backend.copy_from:
        writer = _postgres
    else:  # the portable path
        writer = _executemany
    return writer(conn, table, columns, tuple(keys), tuple(update), changed)


def _last_per_key(rows: list[dict], keys: Sequence[str]) -> list[dict]:
    # One statement cannot touch the same row twice (PostgreSQL refuses); the last row wins.
    by_key = {tuple(r[k] for k in keys): r for r in rows}
    return list(by_key.values())


def _executemany(conn, table, columns, keys, update, changed) -> list[tuple]:
    stmt = upsert_insert(conn, table)
    if update:
        where = table.c[changed].is_distinct_from(stmt.excluded[changed]) if changed else None
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), where=where,
                                          set_={c: stmt.excluded[c] for c in update})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    stmt = stmt.returning(*(table.c[k] for k in keys))
    cols = list(columns)
    rows = [dict(zip(cols, t, strict=True)) for t in zip(*columns.values(), strict=True)]
    return [tuple(r) for r in conn.execute(stmt, rows).all()]


def _postgres(conn, table, columns, keys, update, changed) -> list[tuple]:
    """COPY into a staging table, then one INSERT ... SELECT ... ON CONFLICT."""
    from psycopg import sql

    stage = sql.Identifier(_stage(conn, table, columns))
    return _fetch(conn, _upsert_from(table.name, tuple(columns), stage, keys, update, changed))


def _postgres_json(conn, table, columns, keys, update, changed) -> list[tuple]:
    """A few rows as one JSON parameter (`json_populate_recordset`): the statement's text is
    the same whatever the number of rows, so psycopg parses it once and then prepares it, where
    a multi-row VALUES is new text for every batch size (~1 ms of parsing in Python each)."""
    from psycopg import sql

    cols = list(columns)
    rows = [dict(zip(cols, values, strict=True))
            for values in zip(*columns.values(), strict=True)]
    source = sql.SQL("json_populate_recordset(NULL::{}, %s::json)").format(
        sql.Identifier(table.name))
    statement = _upsert_from(table.name, tuple(cols), source, keys, update, changed)
    return _fetch(conn, statement, (json.dumps(rows, default=_json_value),))


def _json_value(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a value the central store keeps")


def _upsert_from(table: str, cols: tuple[str, ...], source, keys, update, changed):
    from psycopg import sql

    ident = sql.Identifier
    col_list = sql.SQL(", ").join(map(ident, cols))
    if update:
        sets = sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(ident(c), ident(c))
                                  for c in update)
        action = sql.SQL("DO UPDATE SET {}").format(sets)
        if changed:
            action += sql.SQL(" WHERE {}.{} IS DISTINCT FROM EXCLUDED.{}").format(
                ident(table), ident(changed), ident(changed))
    else:
        action = sql.SQL("DO NOTHING")
    key_list = sql.SQL(", ").join(map(ident, keys))
    return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {} RETURNING {}"
                   ).format(ident(table), col_list, col_list, source, key_list, action,
                            key_list)


def _fetch(conn, statement, params=None) -> list[tuple]:
    cur = driver_cursor(conn)
    try:
        cur.execute(statement, params)
        return cur.fetchall()
    finally:
        cur.close()


def driver_cursor(conn: Connection):
    """A cursor of the driver (psycopg) under the SQLAlchemy connection, in its transaction."""
    return conn.connection.driver_connection.cursor()


def copy_frame(conn: Connection, table: Table, frame: pd.DataFrame) -> None:
    """PostgreSQL: COPY the frame straight into `table`, for rows known to be new: as CSV
    where `csv_payload` can write every column exactly, row by row otherwise
    (`copy_frame_rows`). A key that is there after all fails the COPY with UniqueViolation:
    run it in a savepoint."""
    from psycopg import sql

    if frame.empty:
        return
    payload = csv_payload(table, frame)
    if payload is None:
        copy_frame_rows(conn, table, frame)
        return
    cur = driver_cursor(conn)
    try:
        col_list = sql.SQL(", ").join(map(sql.Identifier, frame.columns))
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
                sql.Identifier(table.name), col_list)) as copy:
            copy.write(payload)
    finally:
        cur.close()


def copy_frame_rows(conn: Connection, table: Table, frame: pd.DataFrame) -> None:
    """`copy_frame` row by row through psycopg (binary where every value has its column's
    Python type, text otherwise)."""
    from psycopg import sql

    if frame.empty:
        return
    micros = {c for c in frame.columns if _binary_type(table.c[c].type) == "timestamp"
              and isinstance(frame[c].dtype, np.dtype) and frame[c].dtype.kind == "M"}
    columns = python_columns(frame.drop(columns=list(micros)))
    columns = {c: _pg_micros(frame[c]) if c in micros else columns[c] for c in frame.columns}
    cur = driver_cursor(conn)
    try:
        _copy_in(cur, sql.Identifier(table.name), columns, table, micros)
    finally:
        cur.close()


def csv_payload(table: Table, frame: pd.DataFrame) -> memoryview | None:
    """The frame as CSV for `COPY ... (FORMAT csv)`, written by Arrow's C++ writer from the
    columns as they are: no Python value per cell (`python_columns` and psycopg's write_row
    cost ~2 µs a row of member_items). Texts quoted, NULLs empty and unquoted (COPY reads a
    quoted empty text as '' and an unquoted empty field as NULL), times to the microsecond.
    None when a column is not one this path writes exactly: a text column holding anything
    but texts and gaps, or a column whose dtype is not its table column's type (the caller
    then takes the row-by-row path, which lets PostgreSQL cast)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    arrays = []
    for name in frame.columns:
        array = _arrow_column(_binary_type(table.c[name].type), frame[name])
        if array is None:
            return None
        arrays.append(array)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(pa.table(arrays, names=list(frame.columns)), sink,
                    write_options=pacsv.WriteOptions(include_header=False))
    return memoryview(sink.getvalue())  # Arrow's buffer itself, not a copy of it


def _arrow_column(kind: str | None, col: pd.Series):
    """One column as an Arrow array of the store column's type, or None."""
    import pyarrow as pa

    dtype = col.dtype if isinstance(col.dtype, np.dtype) else None
    if kind == "text" and not pd.api.types.is_numeric_dtype(col):
        try:
            return pa.array(col.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # a value that is not a text
            return None
    if kind == "bool" and dtype is not None and dtype.kind == "b":
        return pa.array(col.to_numpy())
    if kind == "timestamp" and dtype is not None and dtype.kind == "M":
        return pa.array(col.to_numpy("datetime64[us]"), from_pandas=True)
    if kind in ("int4", "int8") and dtype is not None and dtype.kind in "iu":
        return pa.array(col.to_numpy())
    return None


# PostgreSQL's binary `timestamp` is an int64 of microseconds since 2000-01-01 (the same bytes
# as an `int8`): a datetime64 column converts to it in numpy, ~6x faster than to datetimes.
_PG_EPOCH = np.datetime64("2000-01-01T00:00:00", "us")
_PG_EPOCH_PY = datetime(2000, 1, 1)


def _pg_micros(col: pd.Series) -> list:
    values = (col.to_numpy("datetime64[us]") - _PG_EPOCH).astype("int64").tolist()
    absent = col.isna().to_numpy()
    if not absent.any():
        return values
    return [None if m else v for v, m in zip(values, absent, strict=True)]


def _from_pg_micros(values: list) -> list:
    return [None if v is None else _PG_EPOCH_PY + timedelta(microseconds=v) for v in values]


def _stage(conn: Connection, table: Table, columns: dict[str, list]) -> str:
    from psycopg import sql

    ident = sql.Identifier
    name = f"circhub_stage_{table.name}"
    col_list = sql.SQL(", ").join(map(ident, columns))
    cur = driver_cursor(conn)
    try:
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident(name)))
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA")
                    .format(ident(name), col_list, ident(table.name)))
        _copy_in(cur, ident(name), columns, table)
    finally:
        cur.close()
    return name


def _copy_in(cur, target, columns: dict[str, list], table: Table,
             micros: set[str] | frozenset[str] = frozenset()) -> None:
    """COPY the columns' rows into `target` (a staging table, or `table` itself): binary when
    every value has the Python type its column's binary form needs (~4x faster to write and
    to parse: 2.3 against 10.2 µs a row of member_items, measured), text otherwise (text lets
    PostgreSQL cast, e.g. an int into a varchar). Columns named in `micros` hold timestamps as
    `_pg_micros` gives them."""
    from psycopg import sql

    types = ["int8" if c in micros else _binary_type(table.c[c].type) for c in columns]
    binary = all(t is not None and _all_of(values, _PY_TYPES[t])
                 for t, values in zip(types, columns.values(), strict=True))
    if not binary and micros:  # text: timestamps as datetimes again
        columns = {c: _from_pg_micros(v) if c in micros else v for c, v in columns.items()}
    fmt = sql.SQL(" (FORMAT BINARY)" if binary else "")
    col_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN{}").format(target, col_list, fmt)) as copy:
        if binary:
            copy.set_types(types)
        for row in zip(*columns.values(), strict=True):
            copy.write_row(row)


def _binary_type(column_type) -> str | None:
    name = _PG_TYPES.get(type(column_type).__name__)
    if name == "timestamp" and getattr(column_type, "timezone", False):
        return None  # aware columns: left to text, where PostgreSQL applies the session zone
    return name


def _all_of(values: tuple, kind: type) -> bool:
    # bool is an int: an exact type check, so a flag never goes out as an integer. The set of
    # types is built in C (~15 ns a value, against ~40 for a generator over the values).
    return set(map(type, values)) <= {kind, type(None)}


# SQLAlchemy column types circhub's store uses -> PostgreSQL binary COPY type, Python type.
_PG_TYPES = {"String": "text", "Boolean": "bool", "DateTime": "timestamp", "Integer": "int4",
             "BigInteger": "int8"}
_PY_TYPES = {"text": str, "bool": bool, "timestamp": datetime, "int4": int, "int8": int}


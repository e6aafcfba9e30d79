"""SQL built from a profile: the one incremental filter, and the write-back statements.

Everything goes through SQLAlchemy Core constructs, so identifiers are quoted by the dialect
(MySQL backticks, PostgreSQL double quotes, T-SQL brackets) and values are bound.
Profile values are bound without a SQL type: the database infers it from the column compared
or written (psycopg would otherwise cast a string loan id to VARCHAR against an integer key).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from circhub.connections.profile import Entity, Exclusion, Lookup, Source, Step, WhenNull
from circhub.domain.records import field_names, spec

NOW = "$now"
NULL = "$null"


def _bound(value: Any) -> ColumnElement:
    return bindparam(None, value, type_=NullType())


def _tables(source: Source) -> dict[str, Any]:
    """One aliased SQLAlchemy table per alias of the source, with the columns it reads."""
    cols_by_alias: dict[str, set[str]] = {}
    for alias, col in source.column_refs():
        cols_by_alias.setdefault(alias, set()).add(col)
    tables = {
        alias: ref.sql(*sorted(cols_by_alias.get(alias, ()))).alias(alias)
        for alias, ref in source.tables().items()
    }
    return tables


def _col(tables: dict[str, Any], source: Source, expr: str) -> ColumnElement:
    alias, col = source.split(expr)
    return tables[alias].c[col]


def _ref(tables: dict[str, Any], source: Source, expr) -> ColumnElement:
    """A column, or several read as one text (a missing part reads as empty)."""
    if isinstance(expr, str):
        return _col(tables, source, expr)
    parts = [func.coalesce(_col(tables, source, p), literal("")) for p in expr]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined.concat(part)  # || on PostgreSQL, concat() on MySQL, + in T-SQL
    return joined


def _equals_constant(col: ColumnElement, value: Any) -> ColumnElement:
    return col.is_(None) if value == NULL else col == _bound(value)


def source_select(entity: Entity, source: Source, since: datetime | None,
                  until: datetime | None = None,
                  branches: Sequence[str] | None = None) -> Select:
    tables = _tables(source)
    frm = tables[source.table.alias]
    for j in source.joins:
        joined = tables[j.table.alias]
        cond = [_col(tables, source, left) == joined.c[right] for left, right in j.on.items()]
        cond += [_equals_constant(joined.c[col], v) for col, v in j.filter.items()]
        frm = frm.join(joined, and_(*cond), isouter=not j.inner)
    cols = [
        (_ref(tables, source, source.columns[name]) if name in source.columns else null())
        .label(name)
        for name in field_names(entity.name)
    ]
    query = select(*cols).select_from(frm)
    for col, value in source.where_equals.items():
        query = query.where(_equals_constant(_col(tables, source, col), value))
    for exclusion in source.exclude:
        query = query.where(_not_excluded(_col(tables, source, exclusion.column), exclusion))
    query = _branch_filter(query, entity, source, tables, branches)
    cursor = _ref(tables, source, source.columns[entity.cursor])
    return _cursor_window(query, cursor, since, until)


def _not_excluded(col: ColumnElement, exclusion: Exclusion) -> ColumnElement:
    """The row is not one the profile excludes; a NULL column is never excluded."""
    if exclusion.lookup is None:
        return or_(col.is_(None), col.not_in([_bound(v) for v in exclusion.values]))
    lk = exclusion.lookup
    tbl = lk.table.sql(*sorted({lk.column, *lk.where})).alias()
    named = select(literal(1)).select_from(tbl).where(tbl.c[lk.column] == col,
                                                     _where(tbl, lk.where, {}))
    return ~named.exists()


def _branch_filter(query: Select, entity: Entity, source: Source, tables: dict[str, Any],
                   branches: Sequence[str] | None) -> Select:
    """Rows of the given ILS branches only: one member of an instance that hosts several."""
    owner = spec(entity.name).owner_field
    if branches is None or owner is None:
        return query
    column = _ref(tables, source, source.columns[owner])
    return query.where(column.in_(bindparam("branches", list(branches), expanding=True)))


def _cursor_window(query: Select, cursor: ColumnElement, since: datetime | None,
                   until: datetime | None) -> Select:
    """The only incremental filter in circhub: inclusive lower bound, exclusive upper bound.

    Inclusive (>=) because rows sharing the boundary timestamp may have committed after the
    last read; the merge skips re-read rows by key and content hash (dlt / Singer practice).
    """
    if since is not None:
        query = query.where(cursor >= bindparam("since", since))
    if until is not None:
        query = query.where(cursor < bindparam("until", until))
    return query


def extract_query(entity: Entity, since: datetime | None = None,
                  until: datetime | None = None,
                  branches: Sequence[str] | None = None) -> Select:
    """All sources of an entity, ordered by (cursor, key) so a window can stop mid-way.

    `branches` limits the rows to those ILS branch codes (the entity's `owner_field`).
    """
    parts = [source_select(entity, s, since, until, branches) for s in entity.sources]
    if len(parts) == 1:
        q = parts[0]
        return q.order_by(q.selected_columns[entity.cursor], q.selected_columns[entity.key])
    sub = union_all(*parts).subquery("delta")
    return select(sub).order_by(sub.c[entity.cursor], sub.c[entity.key])


def key_count_query(entity: Entity, branches: Sequence[str] | None = None) -> Select:
    """How many rows an entity has at the source (for backfill estimates)."""
    counts = [select(func.count()).select_from(source_select(entity, s, None, None, branches)
                                               .subquery()).scalar_subquery()
              for s in entity.sources]
    total = counts[0]
    for c in counts[1:]:
        total = total + c
    return select(total.label("n"))


def _value(raw: Any, params: dict[str, Any]) -> ColumnElement:
    """One value form of a write-back step (see circhub.connections.profile) as SQL."""
    if isinstance(raw, Lookup):
        return _lookup(raw, params)
    if isinstance(raw, WhenNull):
        chosen = raw.then if _param(params, raw.param) is None else raw.otherwise
        return _value(chosen, params)
    if raw == NOW:
        return func.current_timestamp()
    if raw == NULL:
        return null()
    if isinstance(raw, str) and raw.startswith(":"):
        return _bound(_param(params, raw[1:]))
    return _bound(raw)


def _param(params: dict[str, Any], key: str) -> Any:
    if key not in params:
        raise KeyError(f"write-back parameter {key!r} missing from the command")
    return params[key]


def _lookup(lk: Lookup, params: dict[str, Any]) -> ColumnElement:
    """A scalar subquery. Aliased and never correlated, so it may read the very table the
    statement writes (the check-in row of Polaris reads its checkout row)."""
    tbl = lk.table.sql(*sorted({lk.column, *lk.where})).alias()
    query = select(tbl.c[lk.column]).where(_where(tbl, lk.where, params))
    return query.correlate(None).scalar_subquery()


def _where(tbl, where: dict[str, Any], params: dict[str, Any]):
    return and_(*(tbl.c[col].is_(None) if v == NULL else tbl.c[col] == _value(v, params)
                  for col, v in where.items()))


def step_statement(step: Step, params: dict[str, Any], columns: list[str] | None = None):
    """The statement of one write-back step, ready to execute (values bound from params).

    `columns` lists the columns both tables of a copy_row share (read from the live schema).
    """
    names = set(step.where) | set(step.set) | set(step.unless_newer) | set(columns or ())
    tbl = step.table.sql(*sorted(names))
    if step.op == "update":
        values = {col: _value(v, params) for col, v in step.set.items()}
        return update(tbl).where(_where(tbl, step.where, params),
                                 *_not_newer(tbl, step.unless_newer, params)).values(values)
    if step.op == "delete":
        return delete(tbl).where(_where(tbl, step.where, params))
    if step.op == "insert_missing":
        return _insert_missing(step, tbl, params)
    if not columns:
        raise ValueError(f"copy_row from {step.table.dotted} needs the shared column list")
    dest = step.into.sql(*columns)
    picked = [
        (_value(step.set[c], params) if c in step.set else tbl.c[c]).label(c)
        for c in columns
    ]
    source_rows = select(*picked).where(_where(tbl, step.where, params))
    return insert(dest).from_select(columns, source_rows)


def _not_newer(tbl, guard: dict[str, Any], params: dict[str, Any]) -> list[ColumnElement]:
    """col IS NULL OR col <= value: the row shows nothing newer than the command carries."""
    return [or_(tbl.c[col].is_(None), tbl.c[col] <= _value(v, params))
            for col, v in guard.items()]


def _insert_missing(step: Step, tbl, params: dict[str, Any]):
    """INSERT ... SELECT <values> WHERE NOT EXISTS (<the row>): replay-safe in one statement.

    A lookup in the row's identity that finds nothing (a loan this ILS does not know) inserts
    nothing rather than a row of NULLs.
    """
    row = {**step.where, **step.set}
    values = [_value(v, params).label(c) for c, v in row.items()]
    existing = step.table.sql(*sorted(step.where)).alias("existing")
    already = select(literal(1)).select_from(existing).where(
        _where(existing, step.where, params)).correlate(None).exists()
    known = [_value(v, params).is_not(None) for v in step.where.values()
             if isinstance(v, Lookup)]
    return insert(tbl).from_select(list(row), select(*values).where(~already, *known))

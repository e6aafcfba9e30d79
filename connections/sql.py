"""SQL built from a profile: the one incremental filter, and the write-back statements.

Everything goes through SQLAlchemy Core constructs, so identifiers are quoted by the dialect
(MySQL backticks, PostgreSQL and T-SQL double quotes / brackets) and values are bound.
"""

from __future__ import annotations

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
    select,
    union_all,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from connections.profile import Entity, Source, Step
from domain.records import field_names

NOW = "$now"


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


def _ref(tables: dict[str, Any], source: Source, expr: str) -> ColumnElement:
    alias, col = source.split(expr)
    return tables[alias].c[col]


def source_select(entity: Entity, source: Source, since: datetime | None,
                  until: datetime | None = None) -> Select:
    tables = _tables(source)
    base = tables[source.table.alias]
    frm = base
    for j in source.joins:
        cond = and_(*(_ref(tables, source, left) == tables[j.table.alias].c[right]
                      for left, right in j.on.items()))
        frm = frm.outerjoin(tables[j.table.alias], cond)
    cols = [
        (_ref(tables, source, source.columns[name]) if name in source.columns else null())
        .label(name)
        for name in field_names(entity.name)
    ]
    query = select(*cols).select_from(frm)
    for col, value in source.where_equals.items():
        query = query.where(_ref(tables, source, col) == literal(value))
    cursor = _ref(tables, source, source.columns[entity.cursor])
    return _cursor_window(query, cursor, since, until)


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
                  until: datetime | None = None) -> Select:
    """All sources of an entity, ordered by (cursor, key) so a window can stop mid-way."""
    parts = [source_select(entity, s, since, until) for s in entity.sources]
    if len(parts) == 1:
        q = parts[0]
        return q.order_by(q.selected_columns[entity.cursor], q.selected_columns[entity.key])
    sub = union_all(*parts).subquery("delta")
    return select(sub).order_by(sub.c[entity.cursor], sub.c[entity.key])


def key_count_query(entity: Entity) -> Select:
    """How many rows an entity has at the source (for backfill estimates)."""
    counts = [select(func.count()).select_from(source_select(entity, s, None).subquery())
              .scalar_subquery() for s in entity.sources]
    total = counts[0]
    for c in counts[1:]:
        total = total + c
    return select(total.label("n"))


def _value(raw: Any, params: dict[str, Any], name: str):
    if raw == NOW:
        return func.current_timestamp()
    if isinstance(raw, str) and raw.startswith(":"):
        key = raw[1:]
        if key not in params:
            raise KeyError(f"write-back parameter {key!r} missing from the command")
        return bindparam(f"{name}_{key}", params[key])
    return bindparam(f"{name}_lit", raw)


def _where(tbl, where: dict[str, Any], params: dict[str, Any]):
    return and_(*(tbl.c[col] == _value(v, params, f"w_{col}") for col, v in where.items()))


def step_statement(step: Step, params: dict[str, Any], columns: list[str] | None = None):
    """The statement of one write-back step, ready to execute (values bound from params).

    `columns` lists the columns both tables of a copy_row share (read from the live schema).
    """
    names = set(step.where) | set(step.set) | set(columns or ())
    tbl = step.table.sql(*sorted(names))
    if step.op == "update":
        values = {col: _value(v, params, f"s_{col}") for col, v in step.set.items()}
        return update(tbl).where(_where(tbl, step.where, params)).values(values)
    if step.op == "delete":
        return delete(tbl).where(_where(tbl, step.where, params))
    if not columns:
        raise ValueError(f"copy_row from {step.table.dotted} needs the shared column list")
    dest = step.into.sql(*columns)
    picked = [
        (_value(step.set[c], params, f"s_{c}") if c in step.set else tbl.c[c]).label(c)
        for c in columns
    ]
    source_rows = select(*picked).where(_where(tbl, step.where, params))
    return insert(dest).from_select(columns, source_rows)

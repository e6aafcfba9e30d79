"""SQL built from a profile: the one incremental filter and the read-side forms (write-back
statements: circhub.connections.step_sql).

Everything goes through SQLAlchemy Core constructs, so identifiers are quoted by the dialect
(MySQL backticks, PostgreSQL double quotes, T-SQL brackets) and values are bound.
Profile values are bound without a SQL type: the database infers it from the column compared
or written (psycopg would otherwise cast a string loan id to VARCHAR against an integer key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from circhub.connections.profile import Entity, Exclusion, ProfileError, Source
from circhub.connections.profile_forms import (
    KEY_SEPARATOR,
    CaseMap,
    ColumnRef,
    CompositeKey,
    Greatest,
    MemberConstant,
)
from circhub.connections.step_sql import compare, step_statement
from circhub.domain.records import field_names, spec

__all__ = ["extract_query", "key_count_query", "source_select", "step_statement"]

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


@dataclass(frozen=True)
class _Reader:
    """What a read-side form needs: the aliased tables and the member's constants."""

    tables: dict[str, Any]
    source: Source
    constants: Mapping[str, Any] | None

    def col(self, expr: str) -> ColumnElement:
        return _col(self.tables, self.source, expr)

    def constant(self, name: str) -> ColumnElement:
        if self.constants is None or name not in self.constants:
            raise ProfileError(f"the profile reads the member constant {name!r}: give it in the "
                               f"member's `constants` in the consortium config")
        return _bound(self.constants[name])

    def ref(self, expr) -> ColumnElement:
        """A column, or a form of circhub.connections.profile_forms, as one SQL expression."""
        if isinstance(expr, str):
            return self.col(expr)
        if isinstance(expr, MemberConstant):
            return self.constant(expr.name)
        if isinstance(expr, CompositeKey):
            return _joined([cast(self.col(p), String) for p in expr.parts], KEY_SEPARATOR)
        if isinstance(expr, Greatest):
            return _greatest([self.col(p) for p in expr.parts])
        if isinstance(expr, CaseMap):
            return self._case(expr)
        # several columns read as one text (a missing part reads as empty)
        return _joined([func.coalesce(self.col(p), literal("")) for p in expr], None)

    def _case(self, expr: CaseMap) -> ColumnElement:
        column = self.col(expr.column)
        whens = [(column.in_([_bound(c) for c in codes]), self._result(r))
                 for codes, r in expr.branches]
        return case(*whens, else_=self._result(expr.default))

    def _result(self, raw: Any) -> ColumnElement:
        if isinstance(raw, ColumnRef):
            return self.col(raw.expr)
        if isinstance(raw, MemberConstant):
            return self.constant(raw.name)
        return null() if raw == NULL else literal(raw)

    def condition(self, col: ColumnElement, value: Any) -> ColumnElement:
        if isinstance(value, MemberConstant):
            return col == self.constant(value.name)
        return compare(col, value, _bound)


def _not_excluded(col: ColumnElement, exclusion: Exclusion) -> ColumnElement:
    """The row is not one the profile excludes; a NULL column is never excluded."""
    if exclusion.lookup is None:
        return or_(col.is_(None), col.not_in([_bound(v) for v in exclusion.values]))
    lk = exclusion.lookup
    tbl = lk.table.sql(*sorted({lk.column, *lk.where})).alias()
    named = select(literal(1)).select_from(tbl).where(
        tbl.c[lk.column] == col, *(tbl.c[c] == _bound(v) for c, v in lk.where.items()))
    return ~named.exists()


def _joined(parts: list[ColumnElement], separator: str | None) -> ColumnElement:
    joined = parts[0]
    for part in parts[1:]:
        if separator:
            joined = joined.concat(literal(separator))
        joined = joined.concat(part)  # || on PostgreSQL, concat() on MySQL, + in T-SQL
    return joined


def _greatest(parts: list[ColumnElement]) -> ColumnElement:
    """The newest of several columns, NULLs ignored, in portable SQL (GREATEST is neither
    SQLite's nor older SQL Server's, and PostgreSQL's ignores NULLs where MySQL's does not)."""
    newest = parts[0]
    for part in parts[1:]:
        newest = case((part.is_(None) | (newest >= part), func.coalesce(newest, part)),
                      else_=part)
    return newest



def source_select(entity: Entity, source: Source, since: datetime | None,
                  until: datetime | None = None,
                  branches: Sequence[str] | None = None,
                  constants: Mapping[str, Any] | None = None) -> Select:
    """One source's rows; `constants` are the member's (for "$member.name" forms)."""
    reader = _Reader(_tables(source), source, constants)
    tables = reader.tables
    frm = tables[source.table.alias]
    for j in source.joins:
        joined = tables[j.table.alias]
        cond = [reader.col(left) == joined.c[right] for left, right in j.on.items()]
        cond += [reader.condition(joined.c[col], v) for col, v in j.filter.items()]
        frm = frm.join(joined, and_(*cond), isouter=not j.inner)
    cols = [
        (reader.ref(source.columns[name]) if name in source.columns else null()).label(name)
        for name in field_names(entity.name)
    ]
    query = select(*cols).select_from(frm)
    for col, value in source.where_equals.items():
        query = query.where(reader.condition(reader.col(col), value))
    for exclusion in source.exclude:
        query = query.where(_not_excluded(reader.col(exclusion.column), exclusion))
    query = _branch_filter(query, entity, source, reader, branches)
    cursor = reader.ref(source.columns[entity.cursor])
    return _cursor_window(query, cursor, since, until)


def _branch_filter(query: Select, entity: Entity, source: Source, reader: _Reader,
                   branches: Sequence[str] | None) -> Select:
    """Rows of the given ILS branches only: one member of an instance that hosts several."""
    owner = spec(entity.name).owner_field
    if branches is None or owner is None:
        return query
    column = reader.ref(source.columns[owner])
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
                  branches: Sequence[str] | None = None,
                  constants: Mapping[str, Any] | None = None) -> Select:
    """All sources of an entity, ordered by (cursor, key) so a window can stop mid-way.

    `branches` limits the rows to those ILS branch codes (the entity's `owner_field`);
    `constants` are the member's, for profiles that read "$member.name".
    """
    parts = [source_select(entity, s, since, until, branches, constants)
             for s in entity.sources]
    if len(parts) == 1:
        q = parts[0]
        return q.order_by(q.selected_columns[entity.cursor], q.selected_columns[entity.key])
    sub = union_all(*parts).subquery("delta")
    return select(sub).order_by(sub.c[entity.cursor], sub.c[entity.key])


def key_count_query(entity: Entity, branches: Sequence[str] | None = None,
                    constants: Mapping[str, Any] | None = None) -> Select:
    """How many rows an entity has at the source (for backfill estimates)."""
    counts = [select(func.count()).select_from(
        source_select(entity, s, None, None, branches, constants).subquery()).scalar_subquery()
              for s in entity.sources]
    total = counts[0]
    for c in counts[1:]:
        total = total + c
    return select(total.label("n"))

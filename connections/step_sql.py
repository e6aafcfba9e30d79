"""The SQL of one write-back step (circhub.connections.profile.Step), as SQLAlchemy Core.

circhub.tasks.writeback.steps runs these and checks what each did: it reads every look-up
first (`lookup_query`), counts the rows a step is about (`identity_count`), runs the step
(`step_statement`) and reads back what it wrote (`readback_query`).

Values are bound without a SQL type, so the database types them from the column compared or
written (psycopg would otherwise cast a string loan id to VARCHAR against an integer key), after
`Binding.render` has put them in that column's type and precision (read from the live schema:
a microsecond time sent to a whole-second column would find no row, a datetime sent to a DATE
column would not equal the day).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    not_,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType

from circhub.connections.profile import NewerIn, RowExists, Step
from circhub.connections.profile_forms import (
    KEY_SEPARATOR,
    PREFIX_OP,
    Cond,
    Conditional,
    Lookup,
    WhenNull,
    is_member_constant,
    when_holds,
)

NOW, NULL, NOT_NULL = "$now", "$null", "$not_null"
Target = tuple[str, str]  # (table dotted, column) a value is compared with or written to
Render = Callable[[str, str, Any], Any]


def _bound(value: Any) -> ColumnElement:
    return bindparam(None, value, type_=NullType())


WRITTEN = object()  # marks a Recording's note of which `set` columns a command writes


@dataclass
class Recording:
    """What building one statement asked of its Binding, in order: each value form with the
    branches it took (`Binding.decide`), and which conditional `set` columns were written. A
    later command that takes the same branches everywhere gets the same statement, with its
    own values in the named parameters (`circhub.connections.step_shapes`)."""

    visits: list[tuple] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def bind(self, value: Any) -> ColumnElement:
        name = param_name(len(self.params))
        self.params[name] = value
        return bindparam(name, value, type_=NullType())


def param_name(n: int) -> str:
    return f"circhub_{n}"


@dataclass
class Binding:
    """What a step's values are bound from: the command's parameters (with the member's
    constants as "$member.name"), the look-ups read so far, and the column-type renderer."""

    params: dict[str, Any]
    resolved: dict[int, Any] = field(default_factory=dict)  # id(Lookup) -> the value read
    render: Render | None = None
    record: Recording | None = None  # set while a statement is built to be used again

    def param(self, key: str) -> Any:
        name, _, part = key.partition(".")
        if name not in self.params:
            raise KeyError(f"write-back parameter {name!r} missing from the command")
        value = self.params[name]
        if part and value is not None:  # one part of a composite key
            value = str(value).split(KEY_SEPARATOR)[int(part)]
        return value

    def plain(self, raw: Any, target: Target | None) -> Any:
        """The Python value a form stands for (NOW for the ILS's clock); lookups must have been
        read."""
        if isinstance(raw, Lookup):
            value = self.resolved[id(raw)]
        elif isinstance(raw, WhenNull):
            return self.plain(raw.then if self.param(raw.param) is None else raw.otherwise,
                              target)
        elif isinstance(raw, Conditional):
            return self.plain(raw.value, target)
        elif raw == NOW:
            return NOW
        elif raw == NULL:
            return None
        elif is_member_constant(raw):
            if raw not in self.params:
                raise KeyError(f"member constant {raw[len('$member.'):]!r} missing from the "
                               f"member's `constants`")
            value = self.params[raw]
        elif isinstance(raw, str) and raw.startswith(":"):
            value = self.param(raw[1:])
        else:
            value = raw
        if self.render and target and value is not None:
            return self.render(*target, value)
        return value

    def decide(self, raw: Any, target: Target | None) -> tuple[tuple, Any]:
        """The branches a value form takes for this command (each if_null's side, then whether
        it is a look-up not read yet, the ILS's clock, NULL or a value) and what it stands
        for: the look-up, or the value."""
        sides = []
        while True:
            if isinstance(raw, Lookup) and id(raw) not in self.resolved:
                return (*sides, "lookup"), raw
            if isinstance(raw, WhenNull):
                then = self.param(raw.param) is None
                sides.append(then)
                raw = raw.then if then else raw.otherwise
            elif isinstance(raw, Conditional):
                raw = raw.value
            else:
                break
        plain = self.plain(raw, target)
        if plain == NOW:
            return (*sides, "now"), None
        return (*sides, "null" if plain is None else "value"), plain

    def value(self, raw: Any, target: Target | None) -> ColumnElement:
        """One value form as SQL."""
        branches, found = self.decide(raw, target)
        if self.record is not None:
            self.record.visits.append((raw, target, branches))
        kind = branches[-1]
        if kind == "lookup":
            return _lookup_subquery(found, self)
        if kind == "now":
            return func.current_timestamp()
        if kind == "null":
            return null()
        return self.record.bind(found) if self.record is not None else _bound(found)

    def written(self, step_values: dict[str, Any]) -> dict[str, Any]:
        """The `set` columns this command writes (a conditional one only when it holds)."""
        chosen = self._chosen(step_values)
        if self.record is not None:
            self.record.visits.append((WRITTEN, step_values, tuple(chosen)))
        return chosen

    def _chosen(self, step_values: dict[str, Any]) -> dict[str, Any]:
        return {col: v for col, v in step_values.items()
                if not isinstance(v, Conditional) or when_holds(v.when, self.params)}

    def replay(self, visits: list[tuple]) -> dict[str, Any] | None:
        """This command's values for a statement built with these visits, or None where it
        takes another branch somewhere (it needs a statement of its own)."""
        params: dict[str, Any] = {}
        for first, second, third in visits:
            if first is WRITTEN:
                if tuple(self._chosen(second)) != third:
                    return None
                continue
            branches, found = self.decide(first, second)
            if branches != third:
                return None
            if branches[-1] == "value":
                params[param_name(len(params))] = found
        return params


def as_binding(params: dict[str, Any] | Binding) -> Binding:
    return params if isinstance(params, Binding) else Binding(dict(params))


_COMPARE = {"<": operators.lt, "<=": operators.le, ">": operators.gt, ">=": operators.ge,
            "!=": operators.ne}


def compare(column: ColumnElement, v: Any, bind: Callable[[Any], ColumnElement]
            ) -> ColumnElement:
    """One condition of a profile (read or write side): equality, "$null", "$not_null", IN a
    list, or a comparison; `bind` turns a value form into SQL."""
    if v == NULL:
        return column.is_(None)
    if v == NOT_NULL:
        return column.is_not(None)
    if isinstance(v, Cond) and v.op == "in":
        return column.in_([bind(x) for x in v.value])
    if isinstance(v, Cond) and v.op == "not_in":
        return or_(column.is_(None), column.not_in([bind(x) for x in v.value]))
    if isinstance(v, Cond) and v.op == PREFIX_OP:
        return column.like(_bound(v.value))  # the pattern, never rendered as a column value
    if isinstance(v, Cond):
        return column.operate(_COMPARE[v.op], bind(v.value))
    return column == bind(v)


def where_clause(tbl, dotted: str, conds: dict[str, Any], b: Binding) -> ColumnElement:
    """Every condition of a `where`, each value in its column's type."""
    return and_(*(compare(tbl.c[col], v, lambda x, col=col: b.value(x, (dotted, col)))
                  for col, v in conds.items()))


def _lookup_subquery(lk: Lookup, b: Binding) -> ColumnElement:
    """A look-up as a scalar subquery: only for showing a step's SQL (the push reads each
    look-up first, so that one finding nothing stops the command by name)."""
    return lookup_query(lk, b).limit(None).correlate(None).scalar_subquery()


def lookup_query(lk: Lookup, b: Binding):
    """The look-up's value; two rows at most, so an ambiguous one is told apart."""
    tbl = lk.table.sql(*sorted({lk.column, *lk.where})).alias()
    return select(tbl.c[lk.column]).where(
        where_clause(tbl, lk.table.dotted, lk.where, b)).limit(2)


def _table(step: Step, *extra: str):
    names = set(step.where) | set(step.set) | set(step.unless_newer) | set(step.only_if)
    names |= {c for g in step.newer_in for c in g.on} | set(extra)
    if step.returns:
        names.add(step.returns[0])
    return step.table.sql(*sorted(names))


def identity_count(step: Step, b: Binding):
    """How many rows the step's `where` finds: the rows it is about."""
    tbl = _table(step)
    return select(func.count()).select_from(tbl).where(
        where_clause(tbl, step.table.dotted, step.where, b))


def exists_query(check: RowExists, b: Binding):
    """How many rows match (a count: `SELECT EXISTS` is no T-SQL)."""
    tbl = check.table.sql(*sorted(check.where))
    return select(func.count()).select_from(tbl).where(
        where_clause(tbl, check.table.dotted, check.where, b))


def row_exists(step: Step, b: Binding):
    """insert_missing: whether the row it would insert (its `where`) is there already."""
    # The step's `where` is parsed already: built, not validated again.
    return exists_query(RowExists.model_construct(table=step.table, where=step.where), b)


def step_statement(step: Step, params: dict[str, Any] | Binding,
                   columns: list[str] | None = None):
    """The statement of one write-back step, ready to execute (values bound from params).

    `columns` lists the columns both tables of a copy_row share (read from the live schema).
    """
    b = as_binding(params)
    tbl = _table(step, *(columns or ()))
    dotted = step.table.dotted
    if step.op == "update":
        values = {col: b.value(v, (dotted, col)) for col, v in b.written(step.set).items()}
        return update(tbl).where(where_clause(tbl, dotted, step.where, b),
                                 *_guards(step, tbl, b)).values(values)
    if step.op == "delete":
        return delete(tbl).where(where_clause(tbl, dotted, step.where, b))
    if step.op in ("insert_missing", "insert"):
        row = {**step.where, **b.written(step.set)}
        return insert(tbl).values({c: b.value(v, (dotted, c)) for c, v in row.items()})
    if not columns:
        raise ValueError(f"copy_row from {dotted} needs the shared column list")
    dest = step.into.sql(*columns)
    picked = [
        (b.value(step.set[c], (step.into.dotted, c)) if c in step.set else tbl.c[c]).label(c)
        for c in columns
    ]
    source_rows = select(*picked).where(where_clause(tbl, dotted, step.where, b))
    return insert(dest).from_select(columns, source_rows)


def returning_insert(step: Step, b: Binding, can_return: bool):
    """An insert handing back its new key (`returns`): RETURNING on PostgreSQL and MariaDB
    10.5+, OUTPUT inserted on SQL Server, where the dialect can; else the plain insert, and the
    caller reads the driver's lastrowid (MySQL)."""
    stmt = step_statement(step, b)
    return stmt.returning(stmt.table.c[step.returns[0]]) if can_return else stmt


def _guards(step: Step, tbl, b: Binding) -> list[ColumnElement]:
    """A found row is left alone unless `only_if` holds and nothing shows newer state."""
    dotted = step.table.dotted
    guards = [where_clause(tbl, dotted, step.only_if, b)] if step.only_if else []
    # col IS NULL OR col <= value: the row shows nothing newer than the command carries.
    guards += [or_(tbl.c[col].is_(None), tbl.c[col] <= b.value(v, (dotted, col)))
               for col, v in step.unless_newer.items()]
    guards += [_not_newer_in(tbl, g, b) for g in step.newer_in]
    return guards


def _not_newer_in(tbl, guard: NewerIn, b: Binding) -> ColumnElement:
    """NOT EXISTS (a joined row whose column is newer than the command's value)."""
    other = guard.table.sql(guard.column, *guard.on.values()).alias("newer")
    joined = [tbl.c[mine] == other.c[theirs] for mine, theirs in guard.on.items()]
    newer = other.c[guard.column] > b.value(guard.value, (guard.table.dotted, guard.column))
    return not_(exists().where(*joined, newer))


def readback_query(step: Step, b: Binding, key: dict[str, Any] | None = None):
    """The written columns of the rows the step is about (for an insert: the row it made,
    found by its new key or by all it wrote). A `where` column the step overwrote is not
    looked for: the row no longer shows the old value."""
    written = b.written(step.set)
    cols = sorted(set(written) | set(step.where) | set(key or {}))
    tbl = step.table.sql(*cols)
    if key:
        cond = and_(*(tbl.c[c] == _bound(v) for c, v in key.items()))
    elif step.op == "update":
        cond = where_clause(tbl, step.table.dotted,
                            {c: v for c, v in step.where.items() if c not in written}, b)
    else:
        row = {c: v for c, v in {**step.where, **written}.items() if v != NOW}
        cond = where_clause(tbl, step.table.dotted, row, b)
    return select(*(tbl.c[c] for c in cols)).where(cond)


__all__ = ["Binding", "as_binding", "compare", "identity_count", "lookup_query",
           "readback_query", "returning_insert", "row_exists", "exists_query", "step_statement",
           "where_clause"]

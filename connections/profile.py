"""ILS profiles: one ILS kind described as data (a TOML file in `profiles/`), never as code paths.

A profile maps each canonical entity (see `circhub.domain.records`) onto one or more source tables,
with joins, names the cursor and key, and lists the write-back steps per command kind.
Every table and column name becomes a quoted SQLAlchemy identifier; every value a bound parameter.
The value, condition and column forms are listed in `circhub.connections.profile_forms`;
docs/ils-profiles.md shows each with an example.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import column, table

from circhub.connections.prepare import PrepareObject, parse_prepare
from circhub.connections.profile_forms import (
    SPECIAL_VALUES,
    Conditional,
    Lookup,
    ProfileError,
    WhenNull,
    column_parts,
    is_member_constant,
    lookups_in,
    parse_column_form,
    parse_condition,
    parse_filter,
    parse_when,
)
from circhub.domain.records import canonical_fields, is_optional

__all__ = ["Lookup", "WhenNull", "lookups_in", "ProfileError", "Profile", "Step", "load_profile",
           "parse_profile", "available_profiles"]

PROFILE_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class TableRef:
    schema: str | None
    name: str
    alias: str

    @classmethod
    def parse(cls, dotted: str, alias: str | None = None) -> TableRef:
        schema, _, name = dotted.rpartition(".")
        return cls(schema or None, name, alias or name)

    @property
    def dotted(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def sql(self, *columns: str):
        """A lightweight SQLAlchemy table: names are quoted by the dialect, never pasted."""
        return table(self.name, *(column(c) for c in columns), schema=self.schema)


@dataclass(frozen=True)
class Join:
    table: TableRef
    on: dict[str, str]  # "alias.column" or base column  ->  column of the joined table
    filter: dict[str, Any] = field(default_factory=dict)  # joined column -> condition
    inner: bool = False  # an outer join unless the profile says a match is required


@dataclass(frozen=True)
class Exclusion:
    """Rows a source never yields: those whose column holds one of `values`, or the value a
    `lookup` reads from the ILS (Koha's AnonymousPatron preference names a borrowernumber).
    A NULL column is never excluded (an old loan whose patron was deleted stays a loan), which
    `where` conditions (`!=`, SQL's three-valued logic) would not give."""

    column: str
    values: tuple[Any, ...] = ()
    lookup: Lookup | None = None


# A source column is "column", "alias.column", a list of those read as one text (family name
# then given name, as Chinese names are written), or a form of circhub.connections.profile_forms.
ColumnExpr = Any


@dataclass(frozen=True)
class Source:
    """One table (plus joins) that yields rows of an entity; an entity may union several."""

    table: TableRef
    columns: dict[str, ColumnExpr]  # canonical field -> column expression
    joins: tuple[Join, ...] = ()
    where_equals: dict[str, Any] = field(default_factory=dict)  # column -> condition
    exclude: tuple[Exclusion, ...] = ()  # system and non-lending rows the hub never reads

    def column_refs(self) -> list[tuple[str, str]]:
        """(table alias, column) pairs this source reads, for schema checks."""
        refs = [self.split(part) for expr in self.columns.values()
                for part in column_parts(expr)]
        for j in self.joins:
            refs += [self.split(left) for left in j.on]
            refs += [(j.table.alias, right) for right in j.on.values()]
            refs += [(j.table.alias, col) for col in j.filter]
        refs += [self.split(c) for c in self.where_equals]
        refs += [self.split(e.column) for e in self.exclude]
        return refs

    def split(self, expr: str) -> tuple[str, str]:
        alias, _, col = expr.rpartition(".")
        return (alias or self.table.alias, col)

    def tables(self) -> dict[str, TableRef]:
        found = {self.table.alias: self.table}
        found.update({j.table.alias: j.table for j in self.joins})
        return found


@dataclass(frozen=True)
class Entity:
    name: str
    sources: tuple[Source, ...]
    cursor: str = "updated_at"  # canonical field holding the source's change timestamp
    key: str = "local_id"


@dataclass(frozen=True)
class NewerIn:
    """A version guard over another table: the step leaves its row alone where a row of `table`
    joined on `on` (this table's column -> that table's column) shows `column` newer than
    `value` (e.g. a copy whose current status-history row is newer than the command)."""

    table: TableRef
    on: dict[str, str]
    column: str
    value: Any


@dataclass(frozen=True)
class RowExists:
    """A row of `table` matching `where`: a step it guards was applied before."""

    table: TableRef
    where: dict[str, Any]


@dataclass(frozen=True)
class Step:
    """One write-back statement: update | copy_row | delete | insert_missing | insert.

    `where` names the row(s) the step is about; `rows` says how many it must find ("one" by
    default: a step matching no row, or more, fails the command and nothing is written).
    Guards (`only_if`, `unless_newer`, `newer_in`) leave a found row alone when it shows the
    command applied already or something newer: that is a replay, not an error.
    insert_missing inserts the row `where` + `set` unless a row matching `where` exists;
    insert always inserts one and may hand its new key to later steps (`returns`).
    """

    op: str
    table: TableRef
    where: dict[str, Any]
    set: dict[str, Any] = field(default_factory=dict)
    into: TableRef | None = None  # copy_row's destination
    # update only: column -> value; the row is left alone where the column is already newer
    # (a version guard: a late, older command cannot regress what the ILS shows now).
    unless_newer: dict[str, Any] = field(default_factory=dict)
    only_if: dict[str, Any] = field(default_factory=dict)  # further conditions, not identity
    newer_in: tuple[NewerIn, ...] = ()
    rows: str = "one"  # one | at_most_one | any
    when: dict[str, Any] = field(default_factory=dict)  # conditions on the command's params
    skip_if_exists: RowExists | None = None
    returns: tuple[str, str] | None = None  # insert: (key column, parameter name for later)
    verify: bool = True  # read back what it wrote and compare before the command is applied
    label: str = ""  # "close_loan step 2 (update items)", for messages

    def values(self) -> list[Any]:
        """Every value form the step uses (for lookups and schema checks)."""
        found = [*self.where.values(), *self.set.values(), *self.unless_newer.values(),
                 *self.only_if.values(), *(g.value for g in self.newer_in)]
        if self.skip_if_exists:
            found += list(self.skip_if_exists.where.values())
        return found


@dataclass(frozen=True)
class Profile:
    kind: str
    description: str
    entities: dict[str, Entity]
    writeback: dict[str, tuple[Step, ...]]
    copy_item_type: str | None  # the item type that marks a consortium copy of a foreign book
    capabilities: frozenset[str] = frozenset()
    # What a member agrees to have created at onboarding (circhub.connections.prepare).
    prepare: tuple[PrepareObject, ...] = ()
    # The one branch standing for every other member, for members that choose it
    # (`holder_branches = "one"`); None: the kind offers only a branch per member.
    consortium_branch: str | None = None

    def referenced_columns(self) -> dict[str, set[str]]:
        """Every (table -> columns) the profile reads or writes: what must exist live."""
        found: dict[str, set[str]] = {}
        for entity in self.entities.values():
            for source in entity.sources:
                tables = source.tables()
                for alias, col in source.column_refs():
                    found.setdefault(tables[alias].dotted, set()).add(col)
                for lk in (e.lookup for e in source.exclude if e.lookup):
                    found.setdefault(lk.table.dotted, set()).update({lk.column, *lk.where})
        prepared = tuple(obj.step for obj in self.prepare)
        for steps in [*self.writeback.values(), prepared]:
            for step in steps:
                _step_columns(step, found)
        return found


def _step_columns(step: Step, found: dict[str, set[str]]) -> None:
    cols = set(step.where) | set(step.set) | set(step.unless_newer) | set(step.only_if)
    cols |= {c for g in step.newer_in for c in g.on}
    if step.returns:
        cols.add(step.returns[0])
    found.setdefault(step.table.dotted, set()).update(cols)
    if step.into:
        found.setdefault(step.into.dotted, set())
    for guard in step.newer_in:
        found.setdefault(guard.table.dotted, set()).update({guard.column, *guard.on.values()})
    if step.skip_if_exists:
        found.setdefault(step.skip_if_exists.table.dotted, set()).update(
            step.skip_if_exists.where)
    for value in step.values():
        for lk in lookups_in(value):
            found.setdefault(lk.table.dotted, set()).update({lk.column, *lk.where})


WRITEBACK_KINDS = ("close_loan", "set_item")
# Kinds a profile may leave out: the push marks such a command 'unsupported by profile X'.
OPTIONAL_WRITEBACK_KINDS = ("transfer", "transfer_arrived")
STEP_OPS = ("update", "copy_row", "delete", "insert_missing", "insert")
ROW_COUNTS = ("one", "at_most_one", "any")


def load_profile(kind: str) -> Profile:
    return _load_cached(kind)


@cache
def _load_cached(kind: str) -> Profile:
    path = PROFILE_DIR / f"{kind}.toml"
    if not path.exists():
        known = ", ".join(available_profiles()) or "none"
        raise ProfileError(f"unknown ILS profile {kind!r} (known: {known})")
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return parse_profile(kind, data)


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def parse_profile(kind: str, data: dict[str, Any]) -> Profile:
    where = f"profile {kind!r}"
    entities = {}
    declared = canonical_fields()
    unknown = set(data.get("entities", {})) - set(declared)
    if unknown:
        raise ProfileError(f"{where}: unknown entit(y/ies) {sorted(unknown)}; declared: "
                           f"{', '.join(declared)}")
    for name, fields in declared.items():
        spec = data.get("entities", {}).get(name)
        if spec is None and is_optional(name):
            continue  # an optional entity this ILS kind does not have (or not mapped yet)
        if spec is None:
            raise ProfileError(f"{where}: entity {name!r} is not mapped")
        entities[name] = _parse_entity(where, name, spec, {f.name for f in fields if f.required})
    lookups = _parse_lookups(where, data.get("lookups", {}))
    writeback = {}
    for cmd in WRITEBACK_KINDS:
        steps = data.get("writeback", {}).get(cmd)
        if not steps:
            raise ProfileError(f"{where}: write-back {cmd!r} has no steps")
        writeback[cmd] = tuple(_parse_step(f"{where} write-back {cmd!r}", s, lookups, n)
                               for n, s in enumerate(steps))
    writeback.update(_optional_writeback(where, data.get("writeback", {}), lookups))
    return Profile(
        kind=kind,
        description=data.get("description", ""),
        entities=entities,
        writeback=writeback,
        copy_item_type=data.get("consortium_copy_item_type"),
        capabilities=frozenset(data.get("capabilities", [])),
        prepare=parse_prepare(where, data.get("prepare"),
                              lambda here, raw: _parse_step(here, raw, lookups)),
        consortium_branch=data.get("consortium_branch"),
    )


def _optional_writeback(where: str, raw: dict, lookups: dict[str, Lookup]
                        ) -> dict[str, tuple[Step, ...]]:
    unknown = set(raw) - set(WRITEBACK_KINDS) - set(OPTIONAL_WRITEBACK_KINDS)
    if unknown:
        raise ProfileError(f"{where}: unknown write-back kind(s) {sorted(unknown)}")
    return {cmd: tuple(_parse_step(f"{where} write-back {cmd!r}", s, lookups, n)
                       for n, s in enumerate(raw[cmd]))
            for cmd in OPTIONAL_WRITEBACK_KINDS if raw.get(cmd)}


def _parse_entity(where: str, name: str, spec: dict, required: set[str]) -> Entity:
    sources = []
    for i, src in enumerate(spec.get("sources", [])):
        here = f"{where} entity {name!r} source {i + 1}"
        if "table" not in src or "columns" not in src:
            raise ProfileError(f"{here}: needs 'table' and 'columns'")
        known = {f.name for f in canonical_fields()[name]}
        unknown = set(src["columns"]) - known
        if unknown:
            raise ProfileError(f"{here}: unknown canonical field(s) {sorted(unknown)}")
        missing = required - set(src["columns"])
        if missing:
            raise ProfileError(f"{here}: required field(s) {sorted(missing)} not mapped")
        conditions = {**src.get("where_equals", {}), **src.get("where", {})}
        sources.append(
            Source(
                table=TableRef.parse(src["table"], src.get("alias")),
                columns={k: parse_column_form(here, k, v) for k, v in src["columns"].items()},
                joins=tuple(_parse_join(here, j) for j in src.get("joins", [])),
                where_equals=parse_filter(here, conditions),
                exclude=tuple(_parse_exclusion(here, e) for e in src.get("exclude", [])),
            )
        )
    if not sources:
        raise ProfileError(f"{where}: entity {name!r} has no sources")
    return Entity(name=name, sources=tuple(sources), cursor=spec.get("cursor", "updated_at"))


def _parse_exclusion(where: str, raw: Any) -> Exclusion:
    if not isinstance(raw, dict) or not raw.get("column") or (
            "values" in raw) == ("lookup" in raw):
        raise ProfileError(f"{where}: an exclusion needs 'column' and either 'values' or 'lookup'")
    if "lookup" in raw:
        lookup = _parse_lookup(where, raw["lookup"], {})
        if any(not isinstance(v, str | int) or str(v).startswith((":", "$", "@"))
               for v in lookup.where.values()):
            raise ProfileError(f"{where}: an exclusion's lookup compares with constants only")
        return Exclusion(raw["column"], lookup=lookup)
    values = raw["values"]
    if not isinstance(values, list) or not values:
        raise ProfileError(f"{where}: exclusion of {raw['column']!r}: 'values' is a non-empty list")
    return Exclusion(raw["column"], tuple(values))


def _parse_join(where: str, raw: dict) -> Join:
    if "table" not in raw or not raw.get("on"):
        raise ProfileError(f"{where}: a join needs 'table' and 'on'")
    return Join(TableRef.parse(raw["table"], raw.get("alias")), dict(raw["on"]),
                parse_filter(where, raw.get("filter", {})), bool(raw.get("inner", False)))


def _parse_lookups(where: str, raw: dict) -> dict[str, Lookup]:
    """Named lookups; one may use another defined above it."""
    found: dict[str, Lookup] = {}
    for name, spec in raw.items():
        found[name] = _parse_lookup(f"{where} lookup {name!r}", spec, found, name)
    return found


def _parse_lookup(where: str, spec: Any, named: dict[str, Lookup], name: str = "") -> Lookup:
    if not isinstance(spec, dict) or not {"table", "column", "where"} <= set(spec):
        raise ProfileError(f"{where}: a lookup needs 'table', 'column' and 'where'")
    if not spec["where"]:
        raise ProfileError(f"{where}: a lookup needs a non-empty 'where'")
    conds = _conditions(where, spec["where"], named)
    return Lookup(TableRef.parse(spec["table"]), spec["column"], conds, name,
                  optional=bool(spec.get("optional", False)))


def _conditions(where: str, raw: dict, named: dict[str, Lookup]) -> dict[str, Any]:
    return {c: parse_condition(where, v, lambda w, x: _parse_value(w, x, named))
            for c, v in raw.items()}


def _parse_value(where: str, raw: Any, named: dict[str, Lookup]) -> Any:
    if isinstance(raw, dict) and "lookup" in raw:
        return _parse_lookup(where, raw["lookup"], named)
    if isinstance(raw, dict) and "if_null" in raw:
        param = raw["if_null"]
        if not (isinstance(param, str) and param.startswith(":")) or not {"then", "else"} <= set(
                raw):
            raise ProfileError(f"{where}: if_null needs a ':parameter', 'then' and 'else'")
        return WhenNull(param[1:], _parse_value(where, raw["then"], named),
                        _parse_value(where, raw["else"], named))
    if isinstance(raw, dict):
        raise ProfileError(f"{where}: unknown value form {sorted(raw)}")
    if isinstance(raw, str) and raw.startswith("@"):
        if raw[1:] not in named:
            raise ProfileError(f"{where}: no lookup named {raw[1:]!r}")
        return named[raw[1:]]
    if isinstance(raw, str) and raw.startswith("$") and raw not in SPECIAL_VALUES \
            and not is_member_constant(raw):
        raise ProfileError(f"{where}: {raw!r} is not one of {SPECIAL_VALUES} or $member.NAME")
    return raw


def _set_value(where: str, raw: Any, named: dict[str, Lookup]) -> Any:
    """A `set` value, optionally written only `when` the command's parameters allow."""
    if isinstance(raw, dict) and "when" in raw:
        if set(raw) != {"value", "when"}:
            raise ProfileError(f"{where}: a conditional value is {{ value = ..., when = ... }}")
        return Conditional(_parse_value(where, raw["value"], named),
                           parse_when(where, raw["when"]))
    return _parse_value(where, raw, named)


STEP_KEYS = {"op", "table", "into", "where", "set", "unless_newer", "newer_in", "only_if",
             "rows", "when", "skip_if_exists", "returns", "verify"}


def _parse_step(where: str, raw: dict, lookups: dict[str, Lookup], n: int = 0) -> Step:
    op = raw.get("op")
    if op not in STEP_OPS:
        raise ProfileError(f"{where}: op {op!r} is not one of {STEP_OPS}")
    where = f"{where} step {n + 1} ({op} {raw.get('table')})"
    unknown = set(raw) - STEP_KEYS
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {sorted(unknown)}")
    if not raw.get("where") and op != "insert":
        raise ProfileError(f"{where}: a {op} step needs a 'where' (never touch a whole table)")
    into = TableRef.parse(raw["into"]) if raw.get("into") else None
    if op == "copy_row" and into is None:
        raise ProfileError(f"{where}: copy_row needs 'into'")
    guard = {c: _parse_value(where, v, lookups) for c, v in raw.get("unless_newer", {}).items()}
    newer_in = tuple(_parse_newer_in(where, g, lookups) for g in raw.get("newer_in", []))
    if (guard or newer_in) and op != "update":
        raise ProfileError(f"{where}: 'unless_newer' guards an update step only")
    rows = raw.get("rows", "one")
    if rows not in ROW_COUNTS:
        raise ProfileError(f"{where}: rows {rows!r} is not one of {ROW_COUNTS}")
    return Step(
        op, TableRef.parse(raw["table"]), _conditions(where, raw.get("where", {}), lookups),
        {c: _set_value(where, v, lookups) for c, v in raw.get("set", {}).items()}, into, guard,
        only_if=_conditions(where, raw.get("only_if", {}), lookups), newer_in=newer_in,
        rows=rows, when=parse_when(where, raw["when"]) if "when" in raw else {},
        skip_if_exists=_parse_exists(where, raw.get("skip_if_exists"), lookups),
        returns=_parse_returns(where, op, raw.get("returns")),
        verify=bool(raw.get("verify", True)), label=where)


def _parse_newer_in(where: str, raw: Any, lookups: dict[str, Lookup]) -> NewerIn:
    if not isinstance(raw, dict) or set(raw) != {"table", "on", "column", "value"}:
        raise ProfileError(f"{where}: newer_in is {{ table, on = {{ column = its column }}, "
                           f"column, value }}")
    return NewerIn(TableRef.parse(raw["table"]), dict(raw["on"]), raw["column"],
                   _parse_value(where, raw["value"], lookups))


def _parse_exists(where: str, raw: Any, lookups: dict[str, Lookup]) -> RowExists | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"table", "where"} or not raw["where"]:
        raise ProfileError(f"{where}: skip_if_exists is {{ table, where = {{ ... }} }}")
    return RowExists(TableRef.parse(raw["table"]), _conditions(where, raw["where"], lookups))


def _parse_returns(where: str, op: str, raw: Any) -> tuple[str, str] | None:
    if raw is None:
        return None
    if op != "insert" or not isinstance(raw, dict) or set(raw) != {"column", "as"}:
        raise ProfileError(f"{where}: 'returns' is {{ column, as = \"param\" }} on an insert")
    return raw["column"], raw["as"].lstrip(":")

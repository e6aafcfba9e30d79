"""ILS profiles: one ILS kind described as data (a TOML file in `profiles/`), never as code paths.

A profile maps each canonical entity (see `circhub.domain.records`) onto one or more source tables,
with joins, names the cursor and key, and lists the write-back steps per command kind.
Every table and column name becomes a quoted SQLAlchemy identifier; every value a bound parameter.

Value forms in write-back steps (`where`, `set`) and lookups:
  ":name"   a parameter of the command (see circhub.tasks.writeback.push.command_params)
  "$now"    the ILS's own clock;  "$null"  SQL NULL (in a `where`: IS NULL)
  "@name"   a named lookup from the profile's [lookups.name] table
  { lookup = { table, column, where } }     a scalar subquery: one value read from the ILS
  { if_null = ":name", then = A, else = B }  A when the parameter is missing, else B
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import column, table

from circhub.domain.records import canonical_fields, is_optional

PROFILE_DIR = Path(__file__).parent / "profiles"


class ProfileError(ValueError):
    """A profile file that does not describe a usable ILS kind."""


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
    filter: dict[str, Any] = field(default_factory=dict)  # joined column -> constant | "$null"
    inner: bool = False  # an outer join unless the profile says a match is required


@dataclass(frozen=True)
class Lookup:
    """One value read from the ILS while a write-back runs (e.g. an org unit id by shortname)."""

    table: TableRef
    column: str
    where: dict[str, Any]


@dataclass(frozen=True)
class Exclusion:
    """Rows a source never yields: those whose column holds one of `values`, or the value a
    `lookup` reads from the ILS (Koha's AnonymousPatron preference names a borrowernumber).
    A NULL column is never excluded (an old loan whose patron was deleted stays a loan)."""

    column: str
    values: tuple[Any, ...] = ()
    lookup: Lookup | None = None


# A source column is "column", "alias.column", or a list of those read as one text
# (family name then given name, as Chinese names are written).
ColumnExpr = str | tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """One table (plus joins) that yields rows of an entity; an entity may union several."""

    table: TableRef
    columns: dict[str, ColumnExpr]  # canonical field -> column expression
    joins: tuple[Join, ...] = ()
    where_equals: dict[str, Any] = field(default_factory=dict)  # constant | "$null"
    exclude: tuple[Exclusion, ...] = ()  # system and non-lending rows the hub never reads

    def column_refs(self) -> list[tuple[str, str]]:
        """(table alias, column) pairs this source reads, for schema checks."""
        refs = [self.split(part) for expr in self.columns.values() for part in _parts(expr)]
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


def _parts(expr: ColumnExpr) -> tuple[str, ...]:
    return expr if isinstance(expr, tuple) else (expr,)


@dataclass(frozen=True)
class WhenNull:
    """A value chosen by whether a command parameter is missing (e.g. a status code)."""

    param: str
    then: Any
    otherwise: Any


def lookups_in(value: Any) -> list[Lookup]:
    """Every lookup a value form reads, nested ones included."""
    if isinstance(value, Lookup):
        return [value] + [lk for v in value.where.values() for lk in lookups_in(v)]
    if isinstance(value, WhenNull):
        return lookups_in(value.then) + lookups_in(value.otherwise)
    return []


@dataclass(frozen=True)
class Step:
    """One write-back statement: update | copy_row | delete | insert_missing, on one table.

    insert_missing inserts the row `where` + `set` unless a row matching `where` exists, so a
    replayed command never inserts twice.
    """

    op: str
    table: TableRef
    where: dict[str, Any]
    set: dict[str, Any] = field(default_factory=dict)
    into: TableRef | None = None  # copy_row's destination
    # update only: column -> value; the row is left alone where the column is already newer
    # (a version guard: a late, older command cannot regress what the ILS shows now).
    unless_newer: dict[str, Any] = field(default_factory=dict)
    # parameter -> "set" | "null": the step runs only when each parameter is (not) given
    # (Koha: a loan to the stand-in patron is opened while the book is lent away, closed after).
    when: dict[str, str] = field(default_factory=dict)

    def applies(self, params: dict[str, Any]) -> bool:
        return all((params.get(p) is None) == (state == "null") for p, state in self.when.items())


@dataclass(frozen=True)
class Profile:
    kind: str
    description: str
    entities: dict[str, Entity]
    writeback: dict[str, tuple[Step, ...]]
    copy_item_type: str | None  # the item type that marks a consortium copy of a foreign book
    capabilities: frozenset[str] = frozenset()

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
        for steps in self.writeback.values():
            for step in steps:
                cols = set(step.where) | set(step.set) | set(step.unless_newer)
                found.setdefault(step.table.dotted, set()).update(cols)
                if step.into:
                    found.setdefault(step.into.dotted, set())
                for value in [*step.where.values(), *step.set.values()]:
                    for lk in lookups_in(value):
                        found.setdefault(lk.table.dotted, set()).update({lk.column, *lk.where})
        return found


WRITEBACK_KINDS = ("close_loan", "set_item")
# Kinds a profile may leave out: the push marks such a command 'unsupported by profile X'.
OPTIONAL_WRITEBACK_KINDS = ("transfer", "transfer_arrived")
STEP_OPS = ("update", "copy_row", "delete", "insert_missing")
SPECIAL_VALUES = ("$now", "$null")


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
        writeback[cmd] = tuple(_parse_step(f"{where} write-back {cmd!r}", s, lookups)
                               for s in steps)
    writeback.update(_optional_writeback(where, data.get("writeback", {}), lookups))
    return Profile(
        kind=kind,
        description=data.get("description", ""),
        entities=entities,
        writeback=writeback,
        copy_item_type=data.get("consortium_copy_item_type"),
        capabilities=frozenset(data.get("capabilities", [])),
    )


def _optional_writeback(where: str, raw: dict, lookups: dict[str, Lookup]
                        ) -> dict[str, tuple[Step, ...]]:
    unknown = set(raw) - set(WRITEBACK_KINDS) - set(OPTIONAL_WRITEBACK_KINDS)
    if unknown:
        raise ProfileError(f"{where}: unknown write-back kind(s) {sorted(unknown)}")
    return {cmd: tuple(_parse_step(f"{where} write-back {cmd!r}", s, lookups) for s in raw[cmd])
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
        sources.append(
            Source(
                table=TableRef.parse(src["table"], src.get("alias")),
                columns={k: _column_expr(here, k, v) for k, v in src["columns"].items()},
                joins=tuple(_parse_join(here, j) for j in src.get("joins", [])),
                where_equals=_constants(here, src.get("where_equals", {})),
                exclude=tuple(_parse_exclusion(here, e) for e in src.get("exclude", [])),
            )
        )
    if not sources:
        raise ProfileError(f"{where}: entity {name!r} has no sources")
    return Entity(name=name, sources=tuple(sources), cursor=spec.get("cursor", "updated_at"))


def _parse_exclusion(where: str, raw: dict) -> Exclusion:
    if not isinstance(raw, dict) or not raw.get("column") or (
            "values" in raw) == ("lookup" in raw):
        raise ProfileError(f"{where}: an exclusion needs 'column' and either 'values' or 'lookup'")
    if "lookup" in raw:
        return Exclusion(raw["column"], lookup=_parse_lookup(where, raw["lookup"], {}))
    values = raw["values"]
    if not isinstance(values, list) or not values:
        raise ProfileError(f"{where}: exclusion of {raw['column']!r}: 'values' is a non-empty list")
    return Exclusion(raw["column"], tuple(values))


def _column_expr(where: str, field_name: str, raw: Any) -> ColumnExpr:
    if isinstance(raw, str) and raw:
        return raw
    if isinstance(raw, list) and raw and all(isinstance(p, str) and p for p in raw):
        return tuple(raw)
    raise ProfileError(f"{where}: field {field_name!r} must be a column or a list of columns")


def _parse_join(where: str, raw: dict) -> Join:
    if "table" not in raw or not raw.get("on"):
        raise ProfileError(f"{where}: a join needs 'table' and 'on'")
    return Join(TableRef.parse(raw["table"], raw.get("alias")), dict(raw["on"]),
                _constants(where, raw.get("filter", {})), bool(raw.get("inner", False)))


def _constants(where: str, raw: dict) -> dict[str, Any]:
    """Filters compare with constants only: a "$name" other than "$null" is a typo."""
    for col, value in raw.items():
        if isinstance(value, str) and value.startswith("$") and value != "$null":
            raise ProfileError(f"{where}: filter on {col!r}: {value!r} is not a constant")
    return dict(raw)


def _parse_lookups(where: str, raw: dict) -> dict[str, Lookup]:
    """Named lookups; one may use another defined above it."""
    found: dict[str, Lookup] = {}
    for name, spec in raw.items():
        found[name] = _parse_lookup(f"{where} lookup {name!r}", spec, found)
    return found


def _parse_lookup(where: str, spec: Any, named: dict[str, Lookup]) -> Lookup:
    if not isinstance(spec, dict) or not {"table", "column", "where"} <= set(spec):
        raise ProfileError(f"{where}: a lookup needs 'table', 'column' and 'where'")
    if not spec["where"]:
        raise ProfileError(f"{where}: a lookup needs a non-empty 'where'")
    conds = {c: _parse_value(where, v, named) for c, v in spec["where"].items()}
    return Lookup(TableRef.parse(spec["table"]), spec["column"], conds)


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
    if isinstance(raw, str) and raw.startswith("$") and raw not in SPECIAL_VALUES:
        raise ProfileError(f"{where}: {raw!r} is not one of {SPECIAL_VALUES}")
    return raw


def _parse_step(where: str, raw: dict, lookups: dict[str, Lookup]) -> Step:
    op = raw.get("op")
    if op not in STEP_OPS:
        raise ProfileError(f"{where}: op {op!r} is not one of {STEP_OPS}")
    if not raw.get("where"):
        raise ProfileError(f"{where}: a {op} step needs a 'where' (never touch a whole table)")
    into = TableRef.parse(raw["into"]) if raw.get("into") else None
    if op == "copy_row" and into is None:
        raise ProfileError(f"{where}: copy_row needs 'into'")
    table_ref = TableRef.parse(raw["table"])
    conds = {c: _parse_value(where, v, lookups) for c, v in raw["where"].items()}
    values = {c: _parse_value(where, v, lookups) for c, v in raw.get("set", {}).items()}
    guard = {c: _parse_value(where, v, lookups) for c, v in raw.get("unless_newer", {}).items()}
    if guard and op != "update":
        raise ProfileError(f"{where}: 'unless_newer' guards an update step only")
    when = dict(raw.get("when", {}))
    if any(state not in ("set", "null") for state in when.values()):
        raise ProfileError(f"{where}: 'when' maps a parameter to \"set\" or \"null\"")
    return Step(op, table_ref, conds, values, into, guard, when)

"""ILS profiles: one ILS kind described as data (a TOML file in `profiles/`), never as code paths.

A profile maps each canonical entity (see `domain.records`) onto one or more source tables,
with joins, names the cursor and key, and lists the write-back steps per command kind.
Every table and column name becomes a quoted SQLAlchemy identifier; every value a bound parameter.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import column, table

from domain.records import CANONICAL_FIELDS

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


@dataclass(frozen=True)
class Source:
    """One table (plus joins) that yields rows of an entity; an entity may union several."""

    table: TableRef
    columns: dict[str, str]  # canonical field -> "column" | "alias.column"
    joins: tuple[Join, ...] = ()
    where_equals: dict[str, Any] = field(default_factory=dict)

    def column_refs(self) -> list[tuple[str, str]]:
        """(table alias, column) pairs this source reads, for schema checks."""
        refs = [self.split(expr) for expr in self.columns.values()]
        for j in self.joins:
            refs += [self.split(left) for left in j.on]
            refs += [(j.table.alias, right) for right in j.on.values()]
        refs += [self.split(c) for c in self.where_equals]
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
class Step:
    """One write-back statement: update | copy_row | delete, on one table."""

    op: str
    table: TableRef
    where: dict[str, Any]
    set: dict[str, Any] = field(default_factory=dict)
    into: TableRef | None = None  # copy_row's destination


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
        for steps in self.writeback.values():
            for step in steps:
                cols = set(step.where) | set(step.set)
                found.setdefault(step.table.dotted, set()).update(cols)
                if step.into:
                    found.setdefault(step.into.dotted, set())
        return found


WRITEBACK_KINDS = ("close_loan", "set_item")
STEP_OPS = ("update", "copy_row", "delete")


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
    for name, fields in CANONICAL_FIELDS.items():
        spec = data.get("entities", {}).get(name)
        if spec is None:
            raise ProfileError(f"{where}: entity {name!r} is not mapped")
        entities[name] = _parse_entity(where, name, spec, {f.name for f in fields if f.required})
    writeback = {}
    for cmd in WRITEBACK_KINDS:
        steps = data.get("writeback", {}).get(cmd)
        if not steps:
            raise ProfileError(f"{where}: write-back {cmd!r} has no steps")
        writeback[cmd] = tuple(_parse_step(f"{where} write-back {cmd!r}", s) for s in steps)
    return Profile(
        kind=kind,
        description=data.get("description", ""),
        entities=entities,
        writeback=writeback,
        copy_item_type=data.get("consortium_copy_item_type"),
        capabilities=frozenset(data.get("capabilities", [])),
    )


def _parse_entity(where: str, name: str, spec: dict, required: set[str]) -> Entity:
    sources = []
    for i, src in enumerate(spec.get("sources", [])):
        here = f"{where} entity {name!r} source {i + 1}"
        if "table" not in src or "columns" not in src:
            raise ProfileError(f"{here}: needs 'table' and 'columns'")
        known = {f.name for f in CANONICAL_FIELDS[name]}
        unknown = set(src["columns"]) - known
        if unknown:
            raise ProfileError(f"{here}: unknown canonical field(s) {sorted(unknown)}")
        missing = required - set(src["columns"])
        if missing:
            raise ProfileError(f"{here}: required field(s) {sorted(missing)} not mapped")
        joins = tuple(
            Join(TableRef.parse(j["table"], j.get("alias")), dict(j["on"]))
            for j in src.get("joins", [])
        )
        sources.append(
            Source(
                table=TableRef.parse(src["table"], src.get("alias")),
                columns=dict(src["columns"]),
                joins=joins,
                where_equals=dict(src.get("where_equals", {})),
            )
        )
    if not sources:
        raise ProfileError(f"{where}: entity {name!r} has no sources")
    return Entity(name=name, sources=tuple(sources), cursor=spec.get("cursor", "updated_at"))


def _parse_step(where: str, raw: dict) -> Step:
    op = raw.get("op")
    if op not in STEP_OPS:
        raise ProfileError(f"{where}: op {op!r} is not one of {STEP_OPS}")
    if not raw.get("where"):
        raise ProfileError(f"{where}: a {op} step needs a 'where' (never touch a whole table)")
    into = TableRef.parse(raw["into"]) if raw.get("into") else None
    if op == "copy_row" and into is None:
        raise ProfileError(f"{where}: copy_row needs 'into'")
    table_ref = TableRef.parse(raw["table"])
    return Step(op, table_ref, dict(raw["where"]), dict(raw.get("set", {})), into)

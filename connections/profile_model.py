"""A profile's structure, declared: each TOML table of `connections/profiles/<kind>.toml` is a
frozen pydantic model whose fields are its keys, with their types, allowed values, defaults and
meaning. These models are also the objects the rest of the hub reads (`Profile`, `Entity`,
`Source`, `Step`, ...): there is no second definition to keep in step.

Unknown keys are refused (`extra="forbid"`); `circhub.connections.profile.parse_profile` words
each error with the profile, the place (entity and source, write-back kind and step) and the
key. The small value, condition and column forms (`circhub.connections.profile_forms`) are
parsed by the functions there, called from the validators below; a form validator is given no
place (`where=""`) because the error's location names it.

Validation context: {"kind": the profile's name, "lookups": named look-ups parsed so far}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import column, table

from circhub.connections.config_errors import nearest
from circhub.connections.prepare import PrepareObject, parse_prepare
from circhub.connections.profile_forms import (
    SPECIAL_VALUES,
    Conditional,
    Lookup,
    ProfileError,
    WhenNull,
    at,
    column_parts,
    is_member_constant,
    lookups_in,
    parse_column_form,
    parse_condition,
    parse_filter,
    parse_when,
)
from circhub.domain.records import canonical_fields, is_optional

# Frozen: one parsed profile per kind, cached and shared by every member of that kind.
# Arbitrary types: tables are TableRef, look-ups and forms profile_forms' dataclasses.
MODEL = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

StepOp = Literal["update", "copy_row", "delete", "insert_missing", "insert"]
RowCount = Literal["one", "at_most_one", "any"]
WritebackKind = Literal["close_loan", "set_item", "transfer", "transfer_arrived"]
# Kinds every profile gives; the others it may leave out, and the push then marks such a
# command 'unsupported by profile X'.
REQUIRED_WRITEBACK_KINDS = ("close_loan", "set_item")
PLACED = "placed"  # an error type whose message names its own place (a [[prepare]] object)


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

    def aliased(self, alias: str | None) -> TableRef:
        return TableRef(self.schema, self.name, alias) if alias else self


def _table_ref(raw: Any) -> TableRef:
    if isinstance(raw, TableRef):
        return raw
    if isinstance(raw, str) and raw:
        return TableRef.parse(raw)
    raise ValueError("should be a table name (\"table\" or \"schema.table\")")


Table = Annotated[TableRef, PlainValidator(_table_ref)]


# --- write-side value forms (listed in circhub.connections.profile_forms) -------------------


LOOKUP_KEYS = ("table", "column", "where", "optional")


def parse_lookup(where: str, spec: Any, named: dict[str, Lookup], name: str = "") -> Lookup:
    """A look-up, named ([lookups.name]) or inline ({ lookup = {...} }): a value form, so
    checked here rather than by a model (its conditions may name look-ups defined above it)."""
    if not isinstance(spec, dict) or not {"table", "column", "where"} <= set(spec):
        raise ProfileError(at(where, "a lookup needs 'table', 'column' and 'where'"))
    for key in spec:
        if key not in LOOKUP_KEYS:
            raise ProfileError(at(where, f"unknown key {key!r} of a lookup"
                                         f"{nearest(key, LOOKUP_KEYS)}"))
    if not spec["where"]:
        raise ProfileError(at(where, "a lookup needs a non-empty 'where'"))
    conds = {c: parse_condition(where, v, lambda w, x: parse_value(w, x, named))
             for c, v in spec["where"].items()}
    return Lookup(TableRef.parse(spec["table"]), spec["column"], conds, name,
                  optional=bool(spec.get("optional", False)))


def parse_value(where: str, raw: Any, named: dict[str, Lookup]) -> Any:
    if isinstance(raw, dict) and "lookup" in raw:
        return parse_lookup(where, raw["lookup"], named)
    if isinstance(raw, dict) and "if_null" in raw:
        param = raw["if_null"]
        if not (isinstance(param, str) and param.startswith(":")) or not {"then", "else"} <= set(
                raw):
            raise ProfileError(at(where, "if_null needs a ':parameter', 'then' and 'else'"))
        return WhenNull(param[1:], parse_value(where, raw["then"], named),
                        parse_value(where, raw["else"], named))
    if isinstance(raw, dict):
        raise ProfileError(at(where, f"unknown value form {sorted(raw)}"))
    if isinstance(raw, str) and raw.startswith("@"):
        if raw[1:] not in named:
            raise ProfileError(at(where, f"no lookup named {raw[1:]!r}"))
        return named[raw[1:]]
    if isinstance(raw, str) and raw.startswith("$") and raw not in SPECIAL_VALUES \
            and not is_member_constant(raw):
        raise ProfileError(at(where, f"{raw!r} is not one of {SPECIAL_VALUES} or $member.NAME"))
    return raw


def _named(info: ValidationInfo) -> dict[str, Lookup]:
    return (info.context or {}).get("lookups", {})


def _value(raw: Any, info: ValidationInfo) -> Any:
    return parse_value("", raw, _named(info))


def _condition(raw: Any, info: ValidationInfo) -> Any:
    named = _named(info)
    return parse_condition("", raw, lambda w, x: parse_value(w, x, named))


def _set_value(raw: Any, info: ValidationInfo) -> Any:
    """A `set` value, optionally written only `when` the command's parameters allow."""
    if isinstance(raw, dict) and "when" in raw:
        if set(raw) != {"value", "when"}:
            raise ProfileError("a conditional value is { value = ..., when = ... }")
        return Conditional(_value(raw["value"], info), parse_when("", raw["when"]))
    return _value(raw, info)


Value = Annotated[Any, BeforeValidator(_value)]
Condition = Annotated[Any, BeforeValidator(_condition)]
SetValue = Annotated[Any, BeforeValidator(_set_value)]


def _read_conditions(raw: Any) -> Any:
    return parse_filter("", raw) if isinstance(raw, dict) else raw


def _columns(raw: Any) -> Any:
    if not isinstance(raw, dict):
        return raw
    return {name: parse_column_form("", name, form) for name, form in raw.items()}


# --- read side -------------------------------------------------------------------------------


class Join(BaseModel):
    """A table joined to a source's base table."""

    model_config = MODEL

    # Declared before `table`: the table's validator gives it this alias.
    alias: StrictStr | None = Field(None, description="Name the columns use (\"alias.col\")")
    table: Table = Field(description="The joined table, \"schema.table\" or \"table\"")
    on: dict[str, str] = Field(
        min_length=1,
        description="\"alias.column\" or base column -> column of the joined table")
    filter: Annotated[dict[str, Any], BeforeValidator(_read_conditions)] = Field(
        default_factory=dict,
        description="joined column -> condition (constants only): part of the join")
    inner: StrictBool = Field(
        False, description="A match is required (an inner join); otherwise an outer join")

    @field_validator("table")
    @classmethod
    def _aliased(cls, ref: TableRef, info: ValidationInfo) -> TableRef:
        return ref.aliased(info.data.get("alias"))


class Exclusion(BaseModel):
    """Rows a source never yields: those whose column holds one of `values`, or the value a
    `lookup` reads from the ILS (Koha's AnonymousPatron preference names a borrowernumber).
    A NULL column is never excluded (an old loan whose patron was deleted stays a loan), which
    `where` conditions (`!=`, SQL's three-valued logic) would not give."""

    model_config = MODEL

    column: StrictStr = Field(min_length=1, description="The column compared")
    values: tuple[Any, ...] = Field((), description="Codes whose rows are never read")
    lookup: Lookup | None = Field(
        None, description="{ table, column, where }: the value read from the ILS, constants only")

    @field_validator("lookup", mode="before")
    @classmethod
    def _constant_lookup(cls, raw: Any) -> Lookup | None:
        if raw is None:
            return None
        lookup = parse_lookup("", raw, {})
        if any(not isinstance(v, str | int) or str(v).startswith((":", "$", "@"))
               for v in lookup.where.values()):
            raise ValueError("an exclusion's lookup compares with constants only")
        return lookup

    @model_validator(mode="after")
    def _values_or_lookup(self) -> Exclusion:
        if bool(self.values) == bool(self.lookup):
            raise ValueError("an exclusion needs either a non-empty 'values' or a 'lookup'")
        return self


# A source column is "column", "alias.column", a list of those read as one text (family name
# then given name, as Chinese names are written), or a form of circhub.connections.profile_forms.
ColumnExpr = Any


class Source(BaseModel):
    """One table (plus joins) that yields rows of an entity; an entity may union several."""

    model_config = MODEL

    # Declared before `table`: the table's validator gives it this alias.
    alias: StrictStr | None = Field(None, description="Name the columns use (\"alias.col\")")
    table: Table = Field(description="The base table, \"schema.table\" or \"table\"")
    columns: Annotated[dict[str, ColumnExpr], BeforeValidator(_columns)] = Field(
        description="canonical field -> a column or a read-side form")
    joins: tuple[Join, ...] = Field((), description="Tables joined to the base table")
    where_equals: Annotated[dict[str, Any], BeforeValidator(_read_conditions)] = Field(
        default_factory=dict, validation_alias=AliasChoices("where", "where_equals"),
        description="column -> condition the rows read meet (constants only)")
    exclude: tuple[Exclusion, ...] = Field(
        (), description="System and non-lending rows the hub never reads")

    @field_validator("table")
    @classmethod
    def _aliased(cls, ref: TableRef, info: ValidationInfo) -> TableRef:
        return ref.aliased(info.data.get("alias"))

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


class Entity(BaseModel):
    """A canonical entity (circhub.domain.records) as this ILS kind holds it."""

    model_config = MODEL

    name: str = Field(description="The entity, from its key in [entities]")
    sources: tuple[Source, ...] = Field(description="Read as one UNION ALL; one at least")
    cursor: StrictStr = Field(
        "updated_at", description="Canonical field holding the source's change timestamp")

    @property
    def key(self) -> str:
        return "local_id"  # every entity's key field (circhub.domain.records)

    # Not `min_length`: pydantic checks it on the sources that validated, and would report an
    # entity whose one source has a typo as having none.
    @field_validator("sources")
    @classmethod
    def _one_source_at_least(cls, sources: tuple[Source, ...]) -> tuple[Source, ...]:
        if not sources:
            raise ValueError("an entity needs one source at least")
        return sources

    @model_validator(mode="after")
    def _columns_are_its_fields(self) -> Entity:
        fields = canonical_fields()[self.name]
        known = [f.name for f in fields]
        required = {f.name for f in fields if f.required}
        for n, source in enumerate(self.sources, start=1):
            for name in source.columns:
                if name not in known:
                    raise ValueError(f"source {n}: {name!r} is not a field of {self.name}"
                                     f"{nearest(name, known)}")
            missing = sorted(required - set(source.columns))
            if missing:
                raise ValueError(f"source {n}: required field(s) {missing} not mapped")
        return self


# --- write side ------------------------------------------------------------------------------


class NewerIn(BaseModel):
    """A version guard over another table: the step leaves its row alone where a row of `table`
    joined on `on` (this table's column -> that table's column) shows `column` newer than
    `value` (e.g. a copy whose current status-history row is newer than the command)."""

    model_config = MODEL

    table: Table = Field(description="The other table")
    on: dict[str, str] = Field(min_length=1, description="this table's column -> its column")
    column: StrictStr = Field(description="Its version column")
    value: Value = Field(description="The command's version, e.g. \":state_at\"")


class RowExists(BaseModel):
    """A row of `table` matching `where`: a step it guards was applied before."""

    model_config = MODEL

    table: Table = Field(description="The table looked in")
    where: dict[str, Condition] = Field(min_length=1, description="column -> condition")


def _returned_key(raw: Any) -> Any:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != {"column", "as"}:
        raise ValueError("'returns' is { column, as = \"param\" } on an insert")
    return raw["column"], str(raw["as"]).lstrip(":")


def _when(raw: Any) -> dict[str, Any]:
    return parse_when("", raw)


class Step(BaseModel):
    """One write-back statement: update | copy_row | delete | insert_missing | insert.

    `where` names the row(s) the step is about; `rows` says how many it must find ("one" by
    default: a step matching no row, or more, fails the command and nothing is written).
    Guards (`only_if`, `unless_newer`, `newer_in`) leave a found row alone when it shows the
    command applied already or something newer: that is a replay, not an error.
    insert_missing inserts the row `where` + `set` unless a row matching `where` exists;
    insert always inserts one and may hand its new key to later steps (`returns`).
    """

    model_config = MODEL

    op: StepOp = Field(description="The statement")
    table: Table = Field(description="The table written")
    where: dict[str, Condition] = Field(
        default_factory=dict,
        description="column -> condition: the row(s) the step is about (all but insert)")
    set: dict[str, SetValue] = Field(default_factory=dict, description="column -> value")
    into: Table | None = Field(None, description="copy_row's destination")
    # A version guard: a late, older command cannot regress what the ILS shows now.
    unless_newer: dict[str, Value] = Field(
        default_factory=dict,
        description="update only: column -> value; the row is left alone where the column "
                    "is already newer")
    only_if: dict[str, Condition] = Field(
        default_factory=dict,
        description="Further conditions, not identity: a found row not meeting them is left "
                    "alone")
    newer_in: tuple[NewerIn, ...] = Field(
        (), description="update only: version guards across other tables")
    rows: RowCount = Field("one", description="How many rows `where` must find")
    when: Annotated[dict[str, Any], BeforeValidator(_when)] = Field(
        default_factory=dict,
        description="Conditions on the command's parameters: \"set\", \"missing\" or a value")
    skip_if_exists: RowExists | None = Field(
        None, description="A row showing the step was applied before: skipped")
    returns: Annotated[tuple[str, str] | None, BeforeValidator(_returned_key)] = Field(
        None, description="insert: { column, as }: its new key, as a parameter for later "
                          "steps")
    verify: StrictBool = Field(
        True, description="Read back what it wrote and compare before the command is applied")
    # "profile 'koha' write-back 'close_loan' step 2 (update items)", for messages; given by
    # the profile, which knows the step's place (not a key of the profile language).
    _label: str = PrivateAttr("")

    @property
    def label(self) -> str:
        return self._label

    @model_validator(mode="after")
    def _fits_its_op(self) -> Step:
        broken = [
            f"a {self.op} step needs a 'where' (never touch a whole table)"
            if not self.where and self.op != "insert" else "",
            "copy_row needs 'into'" if self.op == "copy_row" and self.into is None else "",
            "'unless_newer' guards an update step only"
            if (self.unless_newer or self.newer_in) and self.op != "update" else "",
            "'returns' is { column, as = \"param\" } on an insert"
            if self.returns and self.op != "insert" else "",
        ]
        if any(broken):
            raise ValueError("; ".join(b for b in broken if b))
        return self

    def labelled(self, label: str) -> Step:
        self._label = label  # set once, while the profile that holds it is validated
        return self

    def values(self) -> list[Any]:
        """Every value form the step uses (for lookups and schema checks)."""
        found = [*self.where.values(), *self.set.values(), *self.unless_newer.values(),
                 *self.only_if.values(), *(g.value for g in self.newer_in)]
        if self.skip_if_exists:
            found += list(self.skip_if_exists.where.values())
        return found


def step_place(kind: str, command: str, n: int, op: Any, table: Any) -> str:
    """Where a write-back step is, in messages: its kind, number (from 1) and what it does."""
    return f"profile {kind!r} write-back {command!r} step {n} ({op} {table})"


# --- the profile -----------------------------------------------------------------------------


class Profile(BaseModel):
    """One ILS kind: its entities' sources, named look-ups, write-back steps per command kind
    and what a member agrees to have created at onboarding."""

    model_config = MODEL

    kind: str = Field(description="The profile's name: its file's, not a key of the file")
    description: StrictStr = Field("", description="The ILS kind in words")
    copy_item_type: StrictStr | None = Field(
        None, validation_alias="consortium_copy_item_type",
        description="The item type that marks a consortium copy of a foreign book")
    consortium_branch: StrictStr | None = Field(
        None, min_length=1,
        description="The one branch standing for every other member, for members that choose "
                    "it (`holder_branches = \"one\"`); none: the kind offers only a branch per "
                    "member")
    # Before `entities`, `writeback` and `prepare`: their values may name these ("@name").
    lookups: dict[str, Any] = Field(
        default_factory=dict,
        description="Named look-ups ([lookups.name]); one may use another defined above it")
    entities: dict[str, Entity] = Field(
        default_factory=dict, validate_default=True,
        description="Canonical entity -> its sources; an optional entity may be left out")
    writeback: dict[WritebackKind, tuple[Step, ...]] = Field(
        description="Command kind -> its steps, run in one ILS transaction")
    prepare: tuple[PrepareObject, ...] = Field(
        (), description="What a member agrees to have created at onboarding "
                        "(circhub.connections.prepare)")

    @field_validator("lookups", mode="before")
    @classmethod
    def _named_lookups(cls, raw: Any, info: ValidationInfo) -> Any:
        if not isinstance(raw, dict):
            raise ValueError("should be a table of named look-ups ([lookups.name])")
        found: dict[str, Lookup] = {}
        broken = []
        for name, spec in raw.items():
            try:
                found[name] = parse_lookup(f"lookup {name!r}", spec, found, name)
            except ProfileError as exc:
                broken.append(str(exc))
                # Known by name all the same: the steps using it are not reported too (the
                # look-up's own error is the one to fix).
                found[name] = Lookup(TableRef.parse(name), "", {}, name)
        # The steps validated after this field read them by name (validation context).
        if info.context is not None:
            info.context["lookups"] = found
        if broken:
            raise ValueError("; ".join(broken))
        return found

    @field_validator("entities", mode="before")
    @classmethod
    def _declared_entities(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        declared = canonical_fields()
        broken = [f"unknown entity {name!r}{nearest(name, declared)}"
                  for name in raw if name not in declared]
        broken += [f"entity {name!r} is not mapped" for name in declared
                   if name not in raw and not is_optional(name)]
        if broken:
            raise ValueError("; ".join(broken))
        return {name: {**spec, "name": name} if isinstance(spec, dict) else spec
                for name, spec in raw.items()}

    @field_validator("writeback")
    @classmethod
    def _required_kinds_labelled(cls, steps: dict[str, tuple[Step, ...]],
                                 info: ValidationInfo) -> dict[str, tuple[Step, ...]]:
        missing = [kind for kind in REQUIRED_WRITEBACK_KINDS if not steps.get(kind)]
        if missing:
            raise ValueError("; ".join(f"write-back {kind!r} has no steps" for kind in missing))
        kind = info.data.get("kind", "")
        return {command: tuple(s.labelled(step_place(kind, command, n, s.op, s.table.dotted))
                               for n, s in enumerate(given, start=1))
                for command, given in steps.items() if given}

    @field_validator("prepare", mode="before")
    @classmethod
    def _prepared_objects(cls, raw: Any, info: ValidationInfo) -> Any:
        try:
            return parse_prepare(f"profile {info.data.get('kind', '')!r}", raw,
                                 lambda here, spec: _prepare_step(here, spec, info.context))
        except ProfileError as exc:
            raise PydanticCustomError(PLACED, "{message}", {"message": str(exc)}) from None

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


def _prepare_step(here: str, spec: dict, context: dict | None) -> Step:
    """A [[prepare]] object's insert_missing step, labelled with the object's place."""
    try:
        step = Step.model_validate(spec, context=context)
    except ValidationError as exc:
        error = exc.errors()[0]
        path = ".".join(str(p) for p in error["loc"])
        raise ProfileError(f"{here}: {path}: {error['msg'].removeprefix('Value error, ')}") \
            from None
    return step.labelled(f"{here} step 1 ({step.op} {step.table.dotted})")


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

"""The small forms a profile is written in: values, conditions and read-side column forms.

Write side (a step's `where`, `set`, guards, and lookups):
  ":name"             a command parameter (in the target column's type and precision, read from
                      the live schema: a whole-second DATETIME gets whole seconds, a DATE a day)
  ":name.0"           part 0 of a composite key parameter (parts joined by KEY_SEPARATOR)
  "$now" / "$null"    the ILS's own clock / SQL NULL (in a condition: IS NULL)
  "$not_null"         in a condition: IS NOT NULL
  "$member.name"      the member's constant `name` (its `constants` in the consortium config)
  "@name"             a named lookup ([lookups.name]); { lookup = { table, column, where } } inline
  { if_null = ":p", then = A, else = B }        A when the parameter is missing, else B
  { value = A, when = { p = "set" } }           in a `set`: the column is written only when
                                                 the condition on the command holds
  { in = [A, B] } / { not_in = [A, B] } / { "<" = A } (<, <=, >, >=, "!=")
                                                conditions beyond equality (NOT IN keeps NULLs)
  { starts_with = "text" }                      a text column that begins with the text (a
                                                 note the hub wrote, not one staff wrote)

Read side (a source's `columns`, and its `where` / join `filter` conditions):
  "column" / "alias.column"                     a column
  ["a", "b"]                                    columns read as one text (family, given name)
  { key = ["a", "b"] }                          a composite key: the parts as text, joined
  { greatest = ["a", "j.b"] }                   the newest of several columns (a cursor that
                                                 moves when any of them does), NULLs ignored
  { coalesce = ["j.a", "b"] }                   the first of several columns that is set
  { map = "col", values = { code = "v" }, default = "d" }      code -> canonical value
  { case = "col", when = [{ in = [1, 7], then = A }], else = B }  A and B: constants,
                                                 "$null", "$member.name" or { column = "..." }
  "$member.name"                                a per-member constant as a column
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KEY_SEPARATOR = "-"
SPECIAL_VALUES = ("$now", "$null")
CONDITION_SPECIALS = ("$null", "$not_null")
COMPARISONS = ("<", "<=", ">", ">=", "!=")
LIST_OPS = ("in", "not_in")
PREFIX_OP = "starts_with"
MEMBER_PREFIX = "$member."


class ProfileError(ValueError):
    """A profile file that does not describe a usable ILS kind."""


FormError = ProfileError  # a value or column form that is not one of the documented ones


def at(where: str, message: str) -> str:
    """A message under its place; without one (a profile model's validator: the error's
    location names the place) the bare message."""
    return f"{where}: {message}" if where else message


# --- write side -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Lookup:
    """One value read from the ILS while a write-back runs (e.g. an org unit id by shortname).

    The push reads it before the step that needs it: a look-up that finds nothing stops the
    command, naming `name` and the values searched, instead of writing NULL.
    """

    table: Any  # TableRef
    column: str
    where: dict[str, Any]
    name: str = ""
    # An optional look-up may find nothing: a step whose row or values it names is then not
    # for this command (e.g. "the copy, if it is away from the holder"), instead of failing.
    optional: bool = False

    @property
    def label(self) -> str:
        return self.name or f"{self.table.dotted}.{self.column}"


@dataclass(frozen=True)
class WhenNull:
    """A value chosen by whether a command parameter is missing (e.g. a status code)."""

    param: str
    then: Any
    otherwise: Any


@dataclass(frozen=True)
class Conditional:
    """A `set` value written only when the command's parameters meet `when`."""

    value: Any
    when: dict[str, Any]


@dataclass(frozen=True)
class Cond:
    """A condition other than equality: IN a list, or a comparison."""

    op: str  # in | not_in | < | <= | > | >= | != | starts_with
    value: Any


def lookups_in(value: Any) -> list[Lookup]:
    """Every lookup a value form reads, nested ones included."""
    if isinstance(value, Lookup):
        return [value] + [lk for v in value.where.values() for lk in lookups_in(v)]
    if isinstance(value, WhenNull):
        return lookups_in(value.then) + lookups_in(value.otherwise)
    if isinstance(value, Conditional):
        return lookups_in(value.value)
    if isinstance(value, Cond):
        items = value.value if isinstance(value.value, list) else [value.value]
        return [lk for v in items for lk in lookups_in(v)]
    return []


def is_member_constant(raw: Any) -> bool:
    return isinstance(raw, str) and raw.startswith(MEMBER_PREFIX) and len(raw) > len(MEMBER_PREFIX)


def parse_condition(where: str, raw: Any, parse_value) -> Any:
    """A condition's right-hand side: a value, "$null", "$not_null", {in = [...]}, {"<" = v}."""
    if raw in CONDITION_SPECIALS:
        return raw
    if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) == PREFIX_OP:
        return Cond(PREFIX_OP, _like_prefix(where, raw[PREFIX_OP]))
    if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in LIST_OPS + COMPARISONS:
        op, value = next(iter(raw.items()))
        if op in LIST_OPS:
            if not isinstance(value, list) or not value:
                raise FormError(at(where, f"{op!r} needs a non-empty list"))
            return Cond(op, [parse_value(where, v) for v in value])
        return Cond(op, parse_value(where, value))
    return parse_value(where, raw)


def _like_prefix(where: str, prefix: Any) -> str:
    """A LIKE pattern of a plain prefix: LIKE's own wildcards would need an escape character,
    which not every dialect has by default, so a prefix may not contain them."""
    if not isinstance(prefix, str) or not prefix or set(prefix) & {"%", "_", "\\"}:
        raise FormError(at(where, "starts_with needs a non-empty text without % _ or \\"))
    return prefix + "%"


def parse_when(where: str, raw: Any) -> dict[str, Any]:
    """`when = { param = "set" | "missing" | value }`: conditions on the command's parameters."""
    if not isinstance(raw, dict) or not raw:
        raise FormError(at(where, "'when' needs a table of parameter = \"set\" | \"missing\" "
                                "| value"))
    return {k.lstrip(":"): v for k, v in raw.items()}


def when_holds(when: dict[str, Any], params: dict[str, Any]) -> bool:
    for name, expected in when.items():
        value = params.get(name)
        if expected == "set":
            ok = value is not None
        elif expected == "missing":
            ok = value is None
        else:
            ok = value == expected
        if not ok:
            return False
    return True


# --- read side --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnRef:
    """A column named in a read-side form ("alias.column" or a base-table column)."""

    expr: str


@dataclass(frozen=True)
class CompositeKey:
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Greatest:
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Coalesce:
    parts: tuple[str, ...]


COLUMN_FUNCTIONS = {"key": CompositeKey, "greatest": Greatest, "coalesce": Coalesce}


@dataclass(frozen=True)
class CaseMap:
    """code -> canonical value: CASE column WHEN IN (...) THEN ... ELSE default END."""

    column: str
    branches: tuple[tuple[tuple[Any, ...], Any], ...]  # ((codes...), result)
    default: Any = "$null"


@dataclass(frozen=True)
class MemberConstant:
    name: str


def column_parts(expr: Any) -> tuple[str, ...]:
    """The source columns a read-side form reads (for joins, schema checks)."""
    if isinstance(expr, str):
        return (expr,)
    if isinstance(expr, tuple):
        return expr
    if isinstance(expr, CompositeKey | Greatest | Coalesce):
        return expr.parts
    if isinstance(expr, CaseMap):
        results = [r for _, r in expr.branches] + [expr.default]
        return (expr.column, *(r.expr for r in results if isinstance(r, ColumnRef)))
    return ()


def parse_column_form(where: str, field_name: str, raw: Any) -> Any:
    here = at(where, f"field {field_name!r}")
    if is_member_constant(raw):
        return MemberConstant(raw[len(MEMBER_PREFIX):])
    if isinstance(raw, str) and raw:
        return raw
    if isinstance(raw, list) and raw and all(isinstance(p, str) and p for p in raw):
        return tuple(raw)
    if isinstance(raw, dict) and len(raw) == 1 and set(raw) & set(COLUMN_FUNCTIONS):
        kind, parts = next(iter(raw.items()))
        if not isinstance(parts, list) or len(parts) < 2 or not all(
                isinstance(p, str) and p for p in parts):
            raise FormError(f"{here}: {kind!r} needs a list of two columns or more")
        return COLUMN_FUNCTIONS[kind](tuple(parts))
    if isinstance(raw, dict) and "map" in raw:
        return _parse_map(here, raw)
    if isinstance(raw, dict) and "case" in raw:
        return _parse_case(here, raw)
    raise FormError(f"{here} must be a column, a list of columns, or one of the forms "
                    f"key, greatest, coalesce, map, case")


def _parse_map(here: str, raw: dict) -> CaseMap:
    unknown = set(raw) - {"map", "values", "default"}
    if unknown or not isinstance(raw.get("values"), dict) or not raw["values"]:
        raise FormError(f"{here}: map needs 'map' (a column), 'values' (code = value) and an "
                        f"optional 'default'")
    branches = tuple(((code,), _result(here, value)) for code, value in raw["values"].items())
    return CaseMap(raw["map"], branches, _result(here, raw.get("default", "$null")))


def _parse_case(here: str, raw: dict) -> CaseMap:
    unknown = set(raw) - {"case", "when", "else"}
    whens = raw.get("when")
    if unknown or not isinstance(whens, list) or not whens:
        raise FormError(f"{here}: case needs 'case' (a column), 'when' (a list of "
                        f"{{ in = [...], then = ... }}) and an optional 'else'")
    branches = []
    for w in whens:
        if not isinstance(w, dict) or set(w) != {"in", "then"} or not isinstance(w["in"], list):
            raise FormError(f"{here}: each 'when' is {{ in = [codes], then = value }}")
        branches.append((tuple(w["in"]), _result(here, w["then"])))
    return CaseMap(raw["case"], tuple(branches), _result(here, raw.get("else", "$null")))


def _result(here: str, raw: Any) -> Any:
    """A mapped value: a constant, "$null", "$member.name" or { column = "alias.col" }."""
    if isinstance(raw, dict):
        if set(raw) == {"column"} and isinstance(raw["column"], str):
            return ColumnRef(raw["column"])
        raise FormError(f"{here}: a mapped value is a constant, \"$null\", \"$member.name\" or "
                        f"{{ column = \"...\" }}")
    if is_member_constant(raw):
        return MemberConstant(raw[len(MEMBER_PREFIX):])
    return raw


def parse_filter(where: str, raw: dict) -> dict[str, Any]:
    """Read-side conditions compare with constants: a "$name" other than "$null", "$not_null"
    or "$member.name" is a typo."""
    found = {}
    for col, value in raw.items():
        found[col] = parse_condition(at(where, f"filter on {col!r}"), value, _read_constant)
    return found


def _read_constant(where: str, value: Any) -> Any:
    if is_member_constant(value):
        return MemberConstant(value[len(MEMBER_PREFIX):])
    if isinstance(value, str) and value.startswith("$"):
        raise FormError(at(where, f"{value!r} is not a constant"))
    if isinstance(value, dict | list):
        raise FormError(at(where, f"{value!r} is not a constant"))
    return value

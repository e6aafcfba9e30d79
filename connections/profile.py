"""ILS profiles: one ILS kind described as data (a TOML file in `profiles/`), never as code paths.

A profile maps each canonical entity (see `circhub.domain.records`) onto one or more source tables,
with joins, names the cursor and key, and lists the write-back steps per command kind.
Every table and column name becomes a quoted SQLAlchemy identifier; every value a bound parameter.
Its structure (every key, its type, default and meaning) is declared in
`circhub.connections.profile_model`; this module loads a profile and words what the models
refuse. The value, condition and column forms are listed in `circhub.connections.profile_forms`;
docs/ils-profiles.md shows each with an example.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from circhub.connections.config_errors import nearest
from circhub.connections.profile_forms import Lookup, ProfileError, WhenNull, lookups_in
from circhub.connections.profile_model import (
    PLACED,
    Entity,
    Exclusion,
    Join,
    NewerIn,
    Profile,
    RowExists,
    Source,
    Step,
    TableRef,
    step_place,
)

__all__ = ["Lookup", "WhenNull", "lookups_in", "ProfileError", "Profile", "Step", "Entity",
           "Source", "Join", "Exclusion", "NewerIn", "RowExists", "TableRef", "load_profile",
           "parse_profile", "available_profiles"]

PROFILE_DIR = Path(__file__).parent / "profiles"


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
    """The profile `data` (a TOML file's tables) declares, or a ProfileError with one line per
    problem, each naming the profile, the place and the key."""
    try:
        return Profile.model_validate({**data, "kind": kind},
                                      context={"kind": kind, "lookups": {}})
    except ValidationError as exc:
        raise ProfileError("\n".join(_problem(kind, data, e)
                                      for e in exc.errors(include_url=False))) from None


# --- how a problem reads ---------------------------------------------------------------------

# Tables of the profile a location passes through, named in words: keyed (entities and
# write-back kinds by name) or numbered from 1 (a source's joins and exclusions).
KEYED = {"entities": "entity", "writeback": "write-back"}
NUMBERED = {"sources": "source", "joins": "join", "exclude": "exclusion"}


def _problem(kind: str, data: dict, error: dict) -> str:
    if error["type"] == PLACED:
        return error["msg"]
    loc = tuple(error["loc"])
    if loc[-1:] == ("[key]",):  # a key of a table whose keys are a closed set
        place, path = _place(kind, data, loc[:-2])
        key = str(loc[-2])
        return f"{place}: unknown key {_dotted(path + (key,))!r}" \
               f"{_suggest(key, _quoted(error['ctx']['expected']))}"
    place, path = _place(kind, data, loc)
    if error["type"] == "extra_forbidden":
        return f"{place}: unknown key {_dotted(path)!r}" \
               f"{_suggest(str(path[-1]), _keys_at(loc[:-1]))}"
    if error["type"] == "missing":
        return f"{place}: key {_dotted(path)!r} missing"
    if error["type"] == "value_error":  # a rule or a form: its message says what is wrong
        message = error["msg"].removeprefix("Value error, ")
        return f"{place}: {_dotted(path) + ': ' if path else ''}{message}"
    # A type or an allowed value: "Input should be ...", the key named already.
    message = re.sub(r"^\w+ should", "should", error["msg"])
    return f"{place}: key {_dotted(path)!r} {message}, not {_shown(error['input'])}"


def _place(kind: str, data: Any, loc: tuple) -> tuple[str, tuple]:
    """The place a location is at, in words, and the rest of the location (the key)."""
    words, rest, node = [f"profile {kind!r}"], list(loc), data
    while len(rest) >= 2 and (rest[0] in KEYED or rest[0] in NUMBERED):
        table, key = rest[0], rest[1]
        if table in KEYED and isinstance(key, str):
            words.append(f"{KEYED[table]} {key!r}")
        elif table in NUMBERED and isinstance(key, int):
            words.append(f"{NUMBERED[table]} {key + 1}")
        else:
            break
        node = _child(_child(node, table), key)
        rest = rest[2:]
        if table == "writeback" and rest and isinstance(rest[0], int):
            step = _child(node, rest[0]) or {}
            return step_place(kind, key, rest[0] + 1, _child(step, "op"),
                              _child(step, "table")), tuple(rest[1:])
    return " ".join(words), tuple(rest)


def _child(node: Any, key: Any) -> Any:
    try:
        return node[key]
    except (KeyError, IndexError, TypeError):
        return None


def _keys_at(loc: tuple) -> list[str]:
    """The keys the model at `loc` declares (aliases included), for the nearest of a typo."""
    found: Any = Profile
    for part in loc:
        found = _inside(_unwrapped(found), part)
    found = _unwrapped(found)
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        return []
    keys = []
    for name, field in found.model_fields.items():
        alias = field.validation_alias
        keys += getattr(alias, "choices", None) or [alias or name]
    return [k for k in keys if k != "kind" and k != "name"]  # given by the file, not in it


def _inside(annotation: Any, part: Any) -> Any:
    """The type one step of a location leads to: a model's field, a dict's value, an item."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part)
        return field.annotation if field else None
    args = get_args(annotation)
    if get_origin(annotation) is dict:
        return args[1]
    return args[0] if args else None


def _unwrapped(annotation: Any) -> Any:
    """The type inside `Annotated[...]` and `X | None`."""
    while get_origin(annotation) in (Annotated, Union, UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def _suggest(key: str, known: list[str]) -> str:
    return nearest(key, known) or (f" (known: {', '.join(known)})" if known else "")


def _quoted(expected: str) -> list[str]:
    return re.findall(r"'([^']*)'", expected)


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def _shown(value: Any, longest: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= longest else text[: longest - 3] + "..."

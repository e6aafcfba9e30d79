"""A profile's `[[prepare]]` section: what a member agrees to have created in its ILS at
onboarding, so that the write-backs it will receive find what they refer to.

Koha's `items.holdingbranch` is a foreign key to `branches`, so a member's Koha must have a
branch standing for each other member before the hub can say "your book is held there";
Evergreen's copy update looks the holder up among its org units. Each object is one
replay-safe insert (`insert_missing`: inserted only when no row matches `where`), so running
`circhub prepare` twice creates nothing the second time. `where` is also the check "is it
there?" that `circhub check` asks.

    [[prepare]]
    describe = "consortium branch {branch} for member {code} ({name})"
    for_each = "other_member"            # member | other_member
    when = { holder_branches = "per_member" }   # only for members that chose this (optional)
    table = "branches"
    where = { branchcode = ":branch" }   # what identifies the object: the check
    set = { branchname = ":name" }       # the other columns it is created with

Parameters, as ":name" in `where`/`set` and "{name}" in `describe`:
  :member, :member_branch   this member's code, and its own branch code in its ILS
  :consortium               the consortium's name
  :holder_branches          the member's choice: "per_member" or "one" (config `holder_branches`)
  :consortium_branch        the one branch standing for every other member, when chosen
  :code, :name, :branch     in an `other_member` loop: that member's code, name, and the branch
                            code that stands for it in this ILS (`branches` in the config)
Value forms are those of write-back steps (lookups, "$now", "$null"; circhub.connections.profile).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from circhub.connections.profile_forms import ProfileError, when_holds

FOR_EACH = ("member", "other_member")
_MEMBER = ("member", "member_branch", "consortium", "holder_branches", "consortium_branch")
PARAMETERS = {"member": _MEMBER, "other_member": (*_MEMBER, "code", "name", "branch")}


class PrepareObject(BaseModel):
    """One thing a member's ILS must hold before go-live, and how to create it."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    describe: str = Field(min_length=1, description="Plain words, with {parameters}")
    for_each: Literal["member", "other_member"] = "member"
    # Conditions on the parameters (as a write-back step's `when`): an object only some
    # members agree to, e.g. the one consortium branch of members that chose it.
    when: dict[str, Any] = Field(default_factory=dict)
    table: str = Field(min_length=1)
    where: dict[str, Any] = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)
    step: Any = None  # the parsed insert_missing step (circhub.connections.profile.Step)

    def wanted(self, params: dict[str, Any]) -> bool:
        return when_holds(self.when, params)

    def description(self, params: dict[str, Any]) -> str:
        return self.describe.format_map(params)

    def noun(self) -> str:
        """What the object is, in words, without its parameters ("consortium branch")."""
        return self.describe.split("{", 1)[0].strip()


def parse_prepare(where: str, raw: Any, parse_step: Callable[[str, dict], Any]
                  ) -> tuple[PrepareObject, ...]:
    """The `[[prepare]]` array of a profile; `parse_step` turns a table/where/set into the
    profile's own Step (passed in, so this module needs no import of the profile's)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProfileError(f"{where}: [prepare] must be an array of tables ([[prepare]])")
    found = []
    for i, spec in enumerate(raw, start=1):
        here = f"{where} prepare {i}"
        try:
            obj = PrepareObject.model_validate(spec)
        except ValidationError as exc:
            raise ProfileError(f"{here}: {_first_error(exc)}") from None
        _check_parameters(here, obj)
        step = parse_step(here, {"op": "insert_missing", "table": obj.table,
                                 "where": obj.where, "set": obj.set})
        found.append(obj.model_copy(update={"step": step}))
    return tuple(found)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc']) or 'table'}: {err['msg']}"


def _check_parameters(where: str, obj: PrepareObject) -> None:
    """A parameter the loop does not give is a typo, found when the profile loads."""
    known = PARAMETERS[obj.for_each]
    used = [v[1:] for v in _strings([*obj.where.values(), *obj.set.values()])
            if v.startswith(":")] + [k.lstrip(":") for k in obj.when]
    try:
        obj.describe.format_map({k: "" for k in known})
    except (KeyError, ValueError) as exc:
        raise ProfileError(f"{where}: describe uses {exc} (known: {', '.join(known)})") from None
    unknown = sorted(set(used) - set(known))
    if unknown:
        raise ProfileError(f"{where}: unknown parameter(s) {unknown} for for_each = "
                           f"{obj.for_each!r} (known: {', '.join(known)})")


def _strings(values: list[Any]) -> list[str]:
    """Every text inside value forms, nested lookups included."""
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            out += _strings(list(v.values()))
    return out

"""A `[[members]]` table of the consortium config, declared: one library, its ILS kind and how
to reach its database (`Member`), and the base every config table shares (`CheckedTable`:
strict types, no unknown keys, rules over several fields reported beside the fields' own).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from circhub.connections.config_errors import rule_error
from circhub.connections.holder_note import holder_in_note
from circhub.connections.profile import ProfileError, load_profile

CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")
CONNECTION_FIELDS = ("connection", "connection_env", "connection_secret")

# Strict: a TOML value of the wrong type is an error, never converted ("5" is no number).
# Frozen: one config per process, shared by every stage and cached with its runtime.
MODEL = ConfigDict(extra="forbid", frozen=True, strict=True)


def _constant(value: Any) -> str | int | float | bool:
    if not isinstance(value, str | int | float | bool):
        raise ValueError("should be text, a number or true/false")
    return value


Constant = Annotated[str | int | float | bool, PlainValidator(_constant)]


class CheckedTable(BaseModel):
    """A TOML table whose rules over several fields are checked beside the fields' own, so
    one load reports every problem (an "after" validator would wait for valid fields)."""

    model_config = MODEL

    @classmethod
    def _broken_rules(cls, table: dict) -> list[dict]:
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _with_rules(cls, data: Any, handler) -> Any:
        broken = cls._broken_rules(data) if isinstance(data, dict) else []
        try:
            model = handler(data)
        except ValidationError as exc:
            if not broken:
                raise
            raise ValidationError.from_exception_data(
                exc.title, [*exc.errors(), *broken]) from None
        if broken:
            raise ValidationError.from_exception_data(cls.__name__, broken)
        return model


class Member(CheckedTable):
    """One `[[members]]` table: a library, its ILS kind and how to reach its database."""

    code: str = Field(
        description="Its short code: 2-32 upper-case letters, digits, - or _")
    name: str = Field(
        min_length=1,
        description="The library's name")
    region: str = Field(
        "",
        description="Its region (reports, task tags)")
    profile: str = Field(
        description="Its ILS kind: a profile in `connections/profiles/`")
    connection: str | None = Field(
        None,
        description="A SQLAlchemy URL in clear (demo, tests)")
    connection_env: str | None = Field(
        None,
        description="An environment variable holding the URL")
    connection_secret: str | None = Field(
        None,
        description="A Prefect Secret block holding the URL")
    sync: bool = Field(
        True,
        description="Extract and merge this member")
    writeback: bool = Field(
        True,
        description="Apply its write-backs (false: computed and shown, not applied)")
    branches: dict[str, str] = Field(
        default_factory=dict,
        description="ILS branch code → member code, where the ILS's branch codes are not the "
                    "members' codes")
    barcode_prefix: str = Field(
        "",
        description="Prefix of the barcodes it owns (the longest match wins); empty: its code")
    level: Literal["province", "city", "county"] = Field(
        "county",
        description="For the book-flow reports")
    # Members naming the same instance share one ILS database (a city system hosting branches):
    # each reads only the rows of its own branches (`own_branches`).
    instance: str | None = Field(
        None,
        description="Name of the ILS database it shares with other members; each then reads "
                    "only its own branches")
    constants: dict[str, Constant] = Field(
        default_factory=dict,
        description="Values its profile may refer to, e.g. a lending branch its ILS records "
                    "nowhere")
    # The member's own choice (issue 15): ~250 branches, one per other member, or a single
    # consortium branch and a staff note naming the holder. Only a profile that declares
    # `consortium_branch` can offer "one".
    holder_branches: Literal["per_member", "one"] = Field(
        "per_member",
        description="How its ILS names a book's holder at another member: `per_member`, a "
                    "branch per other member (created by `circhub prepare`); `one`, the one "
                    "consortium branch its profile declares, and the holder in a staff note")

    @model_validator(mode="before")
    @classmethod
    def _prefix_defaults_to_code(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("barcode_prefix") \
                and isinstance(data.get("code"), str):
            return {**data, "barcode_prefix": data["code"]}
        return data

    @classmethod
    def _broken_rules(cls, table: dict) -> list[dict]:
        return _one_connection(table) + _one_branch_offered(table)

    @field_validator("code")
    @classmethod
    def _code_pattern(cls, code: str) -> str:
        if not CODE_PATTERN.match(code):
            raise ValueError("must be 2-32 upper-case letters, digits, - or _")
        return code

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, kind: str) -> str:
        try:
            load_profile(kind)
        except ProfileError as exc:
            raise ValueError(str(exc)) from None
        return kind

    @property
    def consortium_branch(self) -> str | None:
        """The one branch standing for every other member, when the member chose it."""
        if self.holder_branches != "one":
            return None
        return load_profile(self.profile).consortium_branch

    def profile_constants(self) -> dict[str, Constant]:
        """Its `constants` and its choices, as "$member.name" values of its profile."""
        return {**self.constants, "holder_branches": self.holder_branches}

    def own_branches(self) -> list[str] | None:
        """The ILS branch codes whose rows this member extracts; None means all rows."""
        if self.instance is None:
            return None
        return sorted(b for b, code in self.branches.items() if code == self.code)

    def member_for_branch(self, branch: str | None) -> str | None:
        """The member a branch code (or, for one consortium branch, the hub's note read in its
        place) names; None for the consortium branch itself: it stands for no one member."""
        if branch is None or branch == self.consortium_branch:
            return None
        if branch in self.branches:
            return self.branches[branch]
        return holder_in_note(branch) or branch

    def branch_for_member(self, member: str) -> str:
        for branch, code in self.branches.items():
            if code == member:
                return branch
        if member != self.code and self.consortium_branch:
            return self.consortium_branch
        return member


def _one_connection(table: dict) -> list[dict]:
    given = [f for f in CONNECTION_FIELDS if table.get(f)]
    if len(given) == 1:
        return []
    got = f" (got {', '.join(given)})" if given else ""
    return [rule_error("connection", f"give exactly one of {', '.join(CONNECTION_FIELDS)}"
                                     f"{got}")]


def _one_branch_offered(table: dict) -> list[dict]:
    """`holder_branches = "one"` needs a profile that names its one consortium branch."""
    kind = table.get("profile")
    if table.get("holder_branches") != "one" or not isinstance(kind, str):
        return []
    try:
        offered = load_profile(kind).consortium_branch
    except ProfileError:
        return []  # the profile field reports an unknown profile itself
    if offered:
        return []
    return [rule_error("holder_branches", f"'one' is not offered by profile {kind!r} (it "
                                          f"declares no consortium_branch); use 'per_member'")]

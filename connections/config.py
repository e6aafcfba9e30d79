"""The consortium config: one TOML file listing members, checked whole when it is loaded.

Every mistake is reported with the member and the field, all at once, before anything runs.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from circhub.connections.profile import ProfileError, load_profile

CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")
CONNECTION_FIELDS = ("connection", "connection_env", "connection_secret")


class ConfigError(ValueError):
    """The consortium config cannot be used; the message lists every problem found."""


@dataclass(frozen=True)
class Member:
    code: str
    name: str
    region: str
    profile: str
    connection: str | None = None  # a SQLAlchemy URL in clear (demo, tests)
    connection_env: str | None = None  # name of an environment variable holding the URL
    connection_secret: str | None = None  # name of a Prefect Secret block holding the URL
    sync: bool = True
    writeback: bool = True
    branches: dict[str, str] = field(default_factory=dict)  # ILS branch code -> member code
    barcode_prefix: str = ""
    level: str = "county"  # province | city | county: for the book-flow reports
    # Members naming the same instance share one ILS database (a city system hosting branches):
    # each reads only the rows of its own branches (`own_branches`).
    instance: str | None = None

    def own_branches(self) -> list[str] | None:
        """The ILS branch codes whose rows this member extracts; None means all rows."""
        if self.instance is None:
            return None
        return sorted(b for b, code in self.branches.items() if code == self.code)

    def member_for_branch(self, branch: str | None) -> str | None:
        if branch is None:
            return None
        return self.branches.get(branch, branch)

    def branch_for_member(self, member: str) -> str:
        for branch, code in self.branches.items():
            if code == member:
                return branch
        return member


@dataclass(frozen=True)
class Consortium:
    name: str
    members: tuple[Member, ...]
    central_store: str | None = None
    central_store_env: str | None = None
    max_source_connections: int = 8
    lookback_seconds: int = 300
    # Rows of one entity a sync reads at most; a larger delta is taken a slice per sync
    # (circhub.tasks.sync.extract.read_delta), which bounds a sync's memory by this, not by the
    # delta.
    max_delta_rows: int = 50_000
    # A member's batch of an entity (10 rows or more) with a larger share of rows failing
    # validation is refused whole: that member's merge stops and its run fails by name,
    # instead of quarantining everything (circhub.tasks.sync.validate).
    max_bad_share: float = 0.5
    # Great Expectations Data Docs, one site per flow under it (sync-consortium/index.html, ...);
    # `data_docs_dir` in the file, relative to the file's folder. None: not written.
    data_docs_dir: Path | None = Path("data-docs")
    demo: bool = False  # allows the built-in demo hash key; never set in production
    source_path: Path | None = None
    # Write-back retries: a command failing at its ILS waits base * 2^(n-1) seconds (with
    # jitter, at most the cap) before try n+1, and is dead-lettered after max attempts.
    writeback_max_attempts: int = 5
    writeback_backoff_seconds: float = 30.0
    writeback_backoff_cap_seconds: float = 3600.0

    def member(self, code: str) -> Member:
        for m in self.members:
            if m.code == code:
                return m
        raise ConfigError(f"no member {code!r} in the consortium config")

    @property
    def codes(self) -> set[str]:
        return {m.code for m in self.members}

    def owner_of_barcode(self, barcode: str | None) -> str | None:
        """The owner is the member whose barcode prefix the barcode carries (longest wins)."""
        if not barcode:
            return None
        by_prefix = self._owner_by_prefix
        for length in self._prefix_lengths:  # longest first
            owner = by_prefix.get(barcode[:length])
            if owner is not None:
                return owner
        return None

    def owners_of_barcodes(self, barcodes: pd.Series) -> pd.Series:
        """`owner_of_barcode` for a whole column at once (a backfill's chunk)."""
        owners = pd.Series(None, index=barcodes.index, dtype=object)
        text = barcodes.astype("string")
        for length in self._prefix_lengths:
            found = text.str.slice(0, length).map(self._owner_by_prefix).astype(object)
            owners = owners.where(owners.notna(), found)
        return owners.where(owners.notna(), None)

    # Looked up per barcode and row, with ~250 members: an index, built once per config.
    @cached_property
    def _owner_by_prefix(self) -> dict[str, str]:
        # The first member listed wins a shared prefix, as it always has.
        return {m.barcode_prefix: m.code for m in reversed(self.members)}

    @cached_property
    def _prefix_lengths(self) -> list[int]:
        return sorted({len(p) for p in self._owner_by_prefix}, reverse=True)


def load_config(path: str | Path) -> Consortium:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"consortium config {path} does not exist")
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"consortium config {path}: not valid TOML: {exc}") from exc
    return parse_config(data, source_path=path)


def parse_config(data: dict[str, Any], source_path: Path | None = None) -> Consortium:
    errors: list[str] = []
    head = data.get("consortium", {})
    members = []
    seen: set[str] = set()
    for i, raw in enumerate(data.get("members", [])):
        member = _parse_member(i, raw, errors)
        if member is None:
            continue
        if member.code in seen:
            errors.append(f"member {member.code}: field 'code': duplicate member code")
        seen.add(member.code)
        members.append(member)
    errors += _instance_errors(members)
    if not members and not errors:
        errors.append("no [[members]] listed")
    if not head.get("central_store") and not head.get("central_store_env"):
        head = {**head, "central_store": "sqlite:///circhub.db"}
    data_docs_dir = _data_docs_dir(head.get("data_docs_dir", "data-docs"), source_path, errors)
    max_delta_rows = _positive_int(head, "max_delta_rows", 50_000, errors)
    max_bad_share = _share(head, "max_bad_share", 0.5, errors)
    if errors:
        where = f" {source_path}" if source_path else ""
        raise ConfigError(f"consortium config{where} is invalid:\n  - " + "\n  - ".join(errors))
    return Consortium(
        name=head.get("name", "consortium"),
        members=tuple(members),
        central_store=head.get("central_store"),
        central_store_env=head.get("central_store_env"),
        max_source_connections=int(head.get("max_source_connections", 8)),
        lookback_seconds=int(head.get("lookback_seconds", 300)),
        max_delta_rows=max_delta_rows,
        max_bad_share=max_bad_share,
        data_docs_dir=data_docs_dir,
        demo=bool(head.get("demo", False)),
        source_path=source_path,
        writeback_max_attempts=int(head.get("writeback_max_attempts", 5)),
        writeback_backoff_seconds=float(head.get("writeback_backoff_seconds", 30)),
        writeback_backoff_cap_seconds=float(head.get("writeback_backoff_cap_seconds", 3600)),
    )


def _positive_int(head: dict, name: str, default: int, errors: list[str]) -> int:
    value = head.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        errors.append(f"[consortium] field {name!r}: must be a whole number of at least 1, "
                      f"not {value!r}")
        return default
    return value


def _share(head: dict, name: str, default: float, errors: list[str]) -> float:
    value = head.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        errors.append(f"[consortium] field {name!r}: must be a share above 0 and at most 1 "
                      f"(0.5: half the rows), not {value!r}")
        return default
    return float(value)


def _data_docs_dir(value: Any, source_path: Path | None, errors: list[str]) -> Path | None:
    """A relative folder is taken from the config file's folder (from the working directory for
    a config given as a dict); "" means no Data Docs."""
    if not isinstance(value, str):
        errors.append("[consortium] field 'data_docs_dir': must be a folder path, or \"\" "
                      "for no Data Docs")
        return None
    if not value:
        return None
    path = Path(value).expanduser()
    if source_path is not None and not path.is_absolute():
        path = source_path.resolve().parent / path
    return path


def _instance_errors(members: list[Member]) -> list[str]:
    """Members sharing an instance: same profile, at least one branch each, none claimed twice."""
    errors = []
    owner_of: dict[tuple[str, str], str] = {}
    profiles: dict[str, str] = {}
    for m in (m for m in members if m.instance):
        label = f"member {m.code}: field 'instance'"
        if not m.own_branches():
            errors.append(f"{label}: list its own ILS branch codes in 'branches' (code -> "
                          f"{m.code}), or it would extract nothing")
        if profiles.setdefault(m.instance, m.profile) != m.profile:
            errors.append(f"{label}: instance {m.instance!r} is used with two profiles")
        for branch in m.own_branches():
            other = owner_of.setdefault((m.instance, branch), m.code)
            if other != m.code:
                errors.append(f"{label}: branch {branch!r} is claimed by {other} too")
    return errors


def _parse_member(i: int, raw: dict[str, Any], errors: list[str]) -> Member | None:
    code = raw.get("code")
    label = f"member {code}" if code else f"member #{i + 1}"
    before = len(errors)
    if not code or not isinstance(code, str) or not CODE_PATTERN.match(code):
        errors.append(f"{label}: field 'code': must be 2-32 upper-case letters, digits, - or _")
    for name in ("name", "profile"):
        if not raw.get(name):
            errors.append(f"{label}: field {name!r}: missing")
    given = [f for f in CONNECTION_FIELDS if raw.get(f)]
    if len(given) != 1:
        errors.append(
            f"{label}: field 'connection': give exactly one of {', '.join(CONNECTION_FIELDS)}"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if raw.get("profile"):
        try:
            load_profile(raw["profile"])
        except ProfileError as exc:
            errors.append(f"{label}: field 'profile': {exc}")
    unknown = set(raw) - set(Member.__dataclass_fields__) - {"sync", "writeback"}
    if unknown:
        errors.append(f"{label}: unknown field(s) {sorted(unknown)}")
    if len(errors) > before:
        return None
    return Member(
        code=code,
        name=raw["name"],
        region=raw.get("region", ""),
        profile=raw["profile"],
        connection=raw.get("connection"),
        connection_env=raw.get("connection_env"),
        connection_secret=raw.get("connection_secret"),
        sync=bool(raw.get("sync", True)),
        writeback=bool(raw.get("writeback", True)),
        branches=dict(raw.get("branches", {})),
        barcode_prefix=raw.get("barcode_prefix") or code,
        level=raw.get("level", "county"),
        instance=raw.get("instance"),
    )

"""The consortium config: one TOML file, `[consortium]` settings and `[[members]]`, declared as
pydantic models and checked whole when it is loaded.

Each setting's default, range and meaning live in its field, and nowhere else. Every mistake
(a typo'd key, a value out of range or of the wrong type, two members with one code) is
reported at once, naming `[consortium]` or the member's code, the field and the value, before
anything runs (`circhub.connections.config_errors` words them).
"""

from __future__ import annotations

import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from circhub.connections.config_errors import nearest, problems, rule_error
from circhub.connections.members import CheckedTable, Member
from circhub.connections.roster import roster_problems

__all__ = ["ConfigError", "Consortium", "Member", "Settings", "load_config", "parse_config"]

DEFAULT_CENTRAL_STORE = "sqlite:///circhub.db"
TABLES = ("consortium", "members")  # the config file's top-level keys


class ConfigError(ValueError):
    """The consortium config cannot be used; the message lists every problem found."""


class Settings(CheckedTable):
    """The `[consortium]` table: settings of the whole hub."""

    name: str = Field(
        "consortium", min_length=1,
        description="The consortium's name, shown in runs and reports")
    central_store: str | None = Field(
        None,
        description=f"The central store's SQLAlchemy URL, in clear; `{DEFAULT_CENTRAL_STORE}` "
                    "when neither this nor `central_store_env` is given")
    central_store_env: str | None = Field(
        None,
        description="An environment variable holding the central store's URL (instead of "
                    "`central_store`)")
    max_source_connections: int = Field(
        8, ge=1,
        description="Member database connections open at once, across all runs and workers")
    lookback_seconds: int = Field(
        300, ge=0,
        description="Seconds before its watermark an entity is read again, for rows "
                    "committed late with an older cursor value")
    max_delta_rows: int = Field(
        50_000, ge=1,
        description="Rows of an entity a sync reads at most; a larger delta is taken a "
                    "slice per sync")
    max_bad_share: float = Field(
        0.5, gt=0, le=1,
        description="Share of failing rows above which a member's batch (10 rows or more) "
                    "is refused whole")
    bulk_reader: Literal["arrow", "driver"] = Field(
        "driver",
        description="How a backfill reads a member: `driver` (SQLAlchemy's driver) or "
                    "`arrow` (connectorx into Arrow, for PostgreSQL and MySQL/MariaDB members; "
                    "faster, but it may open a second session on the member while it reads)")
    max_failed_share: float = Field(
        0.25, ge=0, le=1,
        description="Share of the members synced in one run that may fail (unreachable, "
                    "refused) while the run still counts as Completed; more fails the run")
    data_docs_dir: Annotated[Path | None, Field(strict=False)] = Field(
        "data-docs", validate_default=True,
        description="Folder of the Great Expectations Data Docs, one site per flow, "
                    "relative to the config file; `\"\"`: none")
    demo: bool = Field(
        False,
        description="Allows the built-in demo ID key; never in production")
    writeback_max_attempts: int = Field(
        5, ge=1,
        description="Tries of a write-back before it is dead-lettered")
    writeback_backoff_seconds: float = Field(
        30.0, gt=0,
        description="Wait before the second try, doubled at each further try (with jitter)")
    writeback_backoff_cap_seconds: float = Field(
        3600.0, gt=0,
        description="Longest wait between two tries; at least `writeback_backoff_seconds`")

    @model_validator(mode="before")
    @classmethod
    def _store_defaults_to_sqlite(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("central_store") \
                and not data.get("central_store_env"):
            return {**data, "central_store": DEFAULT_CENTRAL_STORE}
        return data

    @field_validator("data_docs_dir", mode="before")
    @classmethod
    def _data_docs_folder(cls, value: Any, info: ValidationInfo) -> Path | None:
        """Relative to the config file's folder (to the working directory for a config given
        as a dict)."""
        if value is None or isinstance(value, Path):  # a Consortium built from Settings
            return value
        if not isinstance(value, str):
            raise ValueError("should be a folder path, or \"\" for no Data Docs")
        if not value:
            return None
        path = Path(value).expanduser()
        config_dir = (info.context or {}).get("config_dir")
        return path if config_dir is None or path.is_absolute() else config_dir / path

    @classmethod
    def _broken_rules(cls, table: dict) -> list[dict]:
        broken = []
        if table.get("central_store") and table.get("central_store_env"):
            broken.append(rule_error("central_store_env",
                                     "give one of central_store, central_store_env, not both"))
        base = table.get("writeback_backoff_seconds", cls.model_fields[
            "writeback_backoff_seconds"].default)
        cap = table.get("writeback_backoff_cap_seconds", cls.model_fields[
            "writeback_backoff_cap_seconds"].default)
        if _number(base) and _number(cap) and cap < base:
            broken.append(rule_error("writeback_backoff_cap_seconds",
                                     f"{cap:g} is below writeback_backoff_seconds ({base:g})"))
        return broken


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class Consortium(Settings):
    """The loaded config: the settings, the members in file order, and where it came from."""

    members: tuple[Member, ...]
    source_path: Path | None = None

    @model_validator(mode="after")
    def _members_agree(self) -> Consortium:
        found = roster_problems(self.members)
        if found:
            raise ValueError("; ".join(found))
        return self

    def member(self, code: str) -> Member:
        for m in self.members:
            if m.code == code:
                return m
        raise ConfigError(f"no member {code!r} in the consortium config"
                          f"{nearest(code, self.codes)}; its members: {known_codes(self.codes)}")

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
        return pd.Series(self.owners_of_barcode_list(barcodes.tolist()), index=barcodes.index,
                         dtype=object)

    def owners_of_barcode_list(self, barcodes: list) -> list[str | None]:
        """`owner_of_barcode` for a list (anything but a text has no owner). Where every
        prefix has one length, as member codes do, one slice and one look-up a barcode:
        ~0.1 µs, against ~0.7 through a call of `owner_of_barcode` each."""
        by_prefix, lengths = self._owner_by_prefix, self._prefix_lengths
        if len(lengths) == 1:
            n = lengths[0]
            return [by_prefix.get(b[:n]) if isinstance(b, str) else None for b in barcodes]
        return [self.owner_of_barcode(b) if isinstance(b, str) else None for b in barcodes]

    # Looked up per barcode and row, with ~250 members: an index, built once per config.
    @cached_property
    def _owner_by_prefix(self) -> dict[str, str]:
        return {m.barcode_prefix: m.code for m in self.members}  # prefixes are unique

    @cached_property
    def _prefix_lengths(self) -> list[int]:
        return sorted({len(p) for p in self._owner_by_prefix}, reverse=True)


def known_codes(codes: set[str], shown: int = 20) -> str:
    """The valid member codes for an error message: all of a small consortium's, the first
    `shown` of a large one's and how many more."""
    ordered = sorted(codes)
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more


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
    """The consortium of a parsed TOML document, or a ConfigError listing every problem."""
    errors = [f"unknown table {k!r}{nearest(k, TABLES)}" for k in data if k not in TABLES]
    config_dir = source_path.resolve().parent if source_path is not None else None
    settings = _settings(data.get("consortium", {}), config_dir, errors)
    members = _members(data.get("members", []), errors)
    errors += roster_problems(members)
    if not members and not errors:
        errors.append("no [[members]] listed")
    if errors:
        where = f" {source_path}" if source_path else ""
        raise ConfigError(f"consortium config{where} is invalid:\n  - " + "\n  - ".join(errors))
    return Consortium(**dict(settings), members=tuple(members), source_path=source_path)


def _settings(table: Any, config_dir: Path | None, errors: list[str]) -> Settings | None:
    where = "[consortium]"
    if not isinstance(table, dict):
        errors.append(f"{where}: should be a table of settings")
        return None
    try:
        return Settings.model_validate(table, context={"config_dir": config_dir})
    except ValidationError as exc:
        errors += problems(exc, where, Settings.model_fields)
        return None


def _members(tables: Any, errors: list[str]) -> list[Member]:
    if not isinstance(tables, list):
        errors.append("members: should be a list of [[members]] tables")
        return []
    members = []
    for i, table in enumerate(tables):
        code = table.get("code") if isinstance(table, dict) else None
        where = f"member {code}:" if code and isinstance(code, str) else f"member #{i + 1}:"
        if not isinstance(table, dict):
            errors.append(f"{where} should be a [[members]] table")
            continue
        try:
            members.append(Member.model_validate(table))
        except ValidationError as exc:
            errors += problems(exc, where, Member.model_fields)
    return members

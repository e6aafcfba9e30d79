"""A failed write-back in plain words: the step (its label names the profile, the command and
the step), and what the member's ILS is missing — a branch, an org unit, a column, a grant —
with what to run.

The driver says "Cannot add or update a child row: a foreign key constraint fails (...
FOREIGN KEY (`holdingbranch`) REFERENCES `branches` ...)"; an operator needs "member K02's
Koha has no consortium branch 'K05' (items.holdingbranch → branches); run `circhub prepare
K02`". The rule broken comes from `circhub.connections.errors.fault_of`, the value from the
step's own parameters (MariaDB's message does not carry it), the noun and the advice from the
profile's `[[prepare]]` object for the table referred to. A look-up that found nothing is
already named by the step itself (circhub.tasks.writeback.steps); here it gains the advice.
"""

from __future__ import annotations

import re
from typing import Any

from circhub.connections.config import Member
from circhub.connections.errors import Fault, fault_of
from circhub.connections.profile import Profile
from circhub.tasks.writeback.steps import StepFailed, StepRefused

# The message of a look-up that found nothing (steps._read_lookup).
EMPTY_LOOKUP = re.compile(r"found nothing in (?P<table>\S+) where (?P<column>\w+) = "
                          r"'(?P<value>[^']*)'")


def explain(member: Member, profile: Profile, failed: StepFailed) -> str:
    """One line: the step, and the missing thing in plain words."""
    if isinstance(failed, StepRefused):
        fault = fault_of(failed.error)
        if fault is not None:
            return f"{failed.step.label}: {_FAULT_TEXT[fault.rule](member, profile, failed, fault)}"
    said = str(failed)
    empty = EMPTY_LOOKUP.search(said)
    if empty and _prepared_noun(profile, empty["table"]):
        noun = _prepared_noun(profile, empty["table"])
        return (f"{said}: {_ils(member, profile)} has no {noun} '{empty['value']}'; "
                f"{_advice(member, profile, empty['table'])}")
    return said


def _ils(member: Member, profile: Profile) -> str:
    return f"member {member.code}'s {profile.kind.capitalize()}"


def _prepared_noun(profile: Profile, table: str) -> str | None:
    """The noun of the prepare object that creates rows of `table` (named with or without its
    schema, as drivers do), or None when the profile does not say how to create them."""
    for obj in profile.prepare:
        if table in (obj.table, obj.table.rpartition(".")[2]):
            return obj.noun()
    return None


def _advice(member: Member, profile: Profile, table: str) -> str:
    if _prepared_noun(profile, table):
        return f"run `circhub prepare {member.code}`"
    return (f"create it in the member's ILS (profile {profile.kind!r} has no [[prepare]] "
            f"object for {table})")


def _foreign_key(member: Member, profile: Profile, failed: StepRefused, fault: Fault) -> str:
    table = fault.table or failed.step.table.dotted
    value = fault.value if fault.value is not None else _column_value(failed, fault.column)
    ref = fault.ref_table or "?"
    noun = _prepared_noun(profile, ref) or f"row in {ref}"
    shown = "?" if value is None else f"'{value}'"
    return (f"{_ils(member, profile)} has no {noun} {shown} "
            f"({table}.{fault.column} → {ref}); {_advice(member, profile, ref)}")


def _not_null(member: Member, profile: Profile, failed: StepRefused, fault: Fault) -> str:
    table = fault.table or failed.step.table.dotted
    return (f"{table}.{fault.column} may not be empty (NOT NULL) in {_ils(member, profile)}, "
            f"and the command has no value for it")


def _unknown_column(member: Member, profile: Profile, failed: StepRefused, fault: Fault) -> str:
    table = fault.table or failed.step.table.dotted
    return (f"{_ils(member, profile)} has no column {table}.{fault.column} (another version "
            f"of the ILS than profile {profile.kind!r} describes)")


def _permission(member: Member, profile: Profile, failed: StepRefused, fault: Fault) -> str:
    verb = fault.verb or failed.step.op.upper()
    return (f"the hub's database login at member {member.code} may not {verb} "
            f"{fault.table}; grant it")


def _unknown_table(member: Member, profile: Profile, failed: StepRefused, fault: Fault) -> str:
    return f"{_ils(member, profile)} has no table {fault.table}"


_FAULT_TEXT = {"foreign_key": _foreign_key, "not_null": _not_null,
               "unknown_column": _unknown_column, "permission": _permission,
               "unknown_table": _unknown_table}


def _column_value(failed: StepRefused, column: str | None) -> Any:
    """What the step wrote into `column`, from its own parameters."""
    step = failed.step
    raw = step.set.get(column, step.where.get(column)) if column else None
    if isinstance(raw, str) and raw.startswith(":"):
        return failed.params.get(raw[1:])
    return raw if isinstance(raw, str | int) and not str(raw).startswith("$") else None

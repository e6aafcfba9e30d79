"""A refused write-back in plain words: which member, which command and step, and what the
member's ILS is missing (a branch, an org unit, a column, a permission), with what to run.

The driver says "Cannot add or update a child row: a foreign key constraint fails (...
FOREIGN KEY (`holdingbranch`) REFERENCES `branches` ...)"; an operator needs "member K02's
Koha has no consortium branch 'K05' (items.holdingbranch → branches); run `circhub prepare
K02`". The rule broken comes from `circhub.connections.errors.fault_of`; the missing value from
the step's own parameters; the noun and the advice from the profile's `[[prepare]]` objects
on the table referred to. An empty look-up (a NOT NULL column fed by an org unit that is not
there) is found by asking the step's look-ups one by one (`empty_lookups`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from circhub.connections.config import Member
from circhub.connections.errors import Fault, driver_message, fault_of
from circhub.connections.profile import Lookup, Profile, Step, lookups_in
from circhub.connections.sql import lookup_query


@dataclass(eq=False)
class StepFailed(Exception):
    """One step of a write-back refused by the ILS (raised by `apply_command`)."""

    kind: str
    number: int  # 1-based, in the profile's order
    step: Step
    params: dict
    error: SQLAlchemyError | None  # None: found wanting before it ran (an empty look-up)

    def __str__(self) -> str:
        said = driver_message(self.error) if self.error else "an empty look-up"
        return f"{self.kind} step {self.number}: {said}"


def step_name(number: int, step: Step) -> str:
    return f"step {number} ({step.op} {step.table.dotted})"


def empty_lookups(conn: Connection, step: Step, params: dict) -> list[Lookup]:
    """The step's look-ups that find nothing for these parameters, outermost first."""
    found = []
    for value in [*step.where.values(), *step.set.values()]:
        for lk in lookups_in(value):
            if lk not in found and conn.execute(lookup_query(lk, params)).scalar() is None:
                found.append(lk)
    return found


def diagnose(engine: Engine, failed: StepFailed) -> list[Lookup]:
    """After a failure: which look-ups of the failed step were empty (a fresh connection; a
    member gone meanwhile just gives no diagnosis)."""
    try:
        with engine.connect() as conn:
            return empty_lookups(conn, failed.step, failed.params)
    except SQLAlchemyError:
        return []


def explain(member: Member, profile: Profile, failed: StepFailed,
            empty: list[Lookup] = ()) -> str:
    """One line: member, command, barcode, step, and the missing thing in plain words."""
    command = " ".join(filter(None, (failed.kind, failed.params.get("barcode"))))
    head = f"member {member.code}: {command}: {step_name(failed.number, failed.step)}"
    return f"{head}: {missing_thing(member, profile, failed, empty)}"


def missing_thing(member: Member, profile: Profile, failed: StepFailed,
                  empty: list[Lookup] = ()) -> str:
    if empty:
        return "; ".join(_empty_lookup(member, profile, lk, failed.params) for lk in empty)
    fault = fault_of(failed.error)
    if fault is None:
        return driver_message(failed.error)
    return _FAULT_TEXT[fault.rule](member, profile, failed, fault)


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


def _empty_lookup(member: Member, profile: Profile, lk: Lookup, params: dict) -> str:
    wanted = ", ".join(f"{col} = {_shown(_given(v, params))}" for col, v in lk.where.items())
    noun = _prepared_noun(profile, lk.table.dotted) or f"row in {lk.table.dotted}"
    return (f"{_ils(member, profile)} has no {noun} where {wanted} (the look-up of "
            f"{lk.table.dotted}.{lk.column} found nothing); "
            f"{_advice(member, profile, lk.table.dotted)}")


def _foreign_key(member: Member, profile: Profile, failed: StepFailed, fault: Fault) -> str:
    table = fault.table or failed.step.table.dotted
    column = fault.column or "?"
    value = fault.value if fault.value is not None else _column_value(failed, fault.column)
    ref = fault.ref_table or "?"
    noun = _prepared_noun(profile, ref) or f"row in {ref}"
    return (f"{_ils(member, profile)} has no {noun} {_shown(value)} "
            f"({table}.{column} → {ref}); {_advice(member, profile, ref)}")


def _not_null(member: Member, profile: Profile, failed: StepFailed, fault: Fault) -> str:
    table = fault.table or failed.step.table.dotted
    return (f"{table}.{fault.column} may not be empty (NOT NULL) in {_ils(member, profile)}, "
            f"and the command has no value for it")


def _unknown_column(member: Member, profile: Profile, failed: StepFailed, fault: Fault) -> str:
    table = fault.table or failed.step.table.dotted
    return (f"{_ils(member, profile)} has no column {table}.{fault.column} (another version "
            f"of the ILS than profile {profile.kind!r} describes)")


def _permission(member: Member, profile: Profile, failed: StepFailed, fault: Fault) -> str:
    verb = fault.verb or failed.step.op.upper()
    return (f"the hub's database login at member {member.code} may not {verb} "
            f"{fault.table}; grant it")


def _unknown_table(member: Member, profile: Profile, failed: StepFailed, fault: Fault) -> str:
    return f"{_ils(member, profile)} has no table {fault.table}"


_FAULT_TEXT = {"foreign_key": _foreign_key, "not_null": _not_null,
               "unknown_column": _unknown_column, "permission": _permission,
               "unknown_table": _unknown_table}


def _column_value(failed: StepFailed, column: str | None) -> Any:
    """What the step wrote into `column`, from its own parameters (MariaDB's message does not
    say it)."""
    step = failed.step
    raw = step.set.get(column, step.where.get(column)) if column else None
    return _given(raw, failed.params)


def _given(raw: Any, params: dict) -> Any:
    if isinstance(raw, str) and raw.startswith(":"):
        return params.get(raw[1:])
    return None if isinstance(raw, str) and raw.startswith("$") else raw


def _shown(value: Any) -> str:
    return "?" if value is None or isinstance(value, Lookup) else f"'{value}'"

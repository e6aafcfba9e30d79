"""A profile checked against a member's live database: every table and column it reads or
writes must exist there. Loading a profile checks its shape; only this check can tell that a
member's ILS version lacks a column (or that an Evergreen member has not installed the
circulation change column the profile needs)."""

from __future__ import annotations

from sqlalchemy import Engine, inspect

from circhub.connections.profile import Profile


def schema_problems(profile: Profile, engine: Engine) -> list[str]:
    """One message per missing table or column, naming it; empty when the schema fits."""
    inspector = inspect(engine)
    problems = []
    for dotted, columns in sorted(profile.referenced_columns().items()):
        schema, _, name = dotted.rpartition(".")
        schema = schema or None
        if not inspector.has_table(name, schema=schema):
            problems.append(f"profile {profile.kind!r}: table {dotted} does not exist")
            continue
        live = {c["name"] for c in inspector.get_columns(name, schema=schema)}
        problems += [f"profile {profile.kind!r}: table {dotted} has no column {col}"
                     for col in sorted(columns - live)]
    return problems

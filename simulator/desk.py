"""What every simulated ILS desk is: one member's circulation desk writing to its ILS database.

A desk (KohaDesk, EvergreenDesk, PolarisDesk) offers create_schema, add_readers, add_items,
checkout, checkin, renew, item_view and loan_view with the same arguments, so a World can mix
ILS kinds; `kind` names the profile that reads the database it writes.
"""

from __future__ import annotations

from sqlalchemy import Engine


class Desk:
    kind: str

    def __init__(self, engine: Engine, branch: str):
        self.engine = engine
        self.branch = branch  # this member's own branch code inside its ILS

    def member_constants(self) -> dict:
        """The `constants` its member's config gives the profile (none for most kinds)."""
        return {}

"""The canonical fields every profile maps its ILS columns onto, per entity.

A profile may leave an optional field unmapped (Koha keeps no return branch on a loan row);
extraction then yields NULL for it. Required fields must be mapped by every profile.
Fields of kind "human_text" (names, titles) may arrive in a legacy Chinese encoding and are
normalised by `circhub.domain.encoding` before validation.
"""

from __future__ import annotations

from dataclasses import dataclass

ENTITIES = ("readers", "items", "loans")


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "text" | "human_text" | "datetime" | "date" | "int"
    required: bool = False


CANONICAL_FIELDS: dict[str, tuple[Field, ...]] = {
    "readers": (
        Field("local_id", "text", True),
        Field("card_number", "text", True),
        Field("id_number", "text", True),
        Field("branch", "text", True),
        Field("birth_date", "date"),
        Field("sex", "text"),
        Field("registered_on", "date"),  # enrolment at this member: decides the home member
        Field("name", "human_text"),  # optional: privacy minimisation is the merge's call
        Field("updated_at", "datetime", True),
    ),
    "items": (
        Field("local_id", "text", True),
        Field("barcode", "text", True),
        Field("home_branch", "text", True),
        Field("holding_branch", "text", True),
        Field("on_loan_due", "datetime"),
        Field("last_seen", "datetime"),
        Field("item_type", "text"),
        Field("title", "human_text"),
        Field("updated_at", "datetime", True),
    ),
    "loans": (
        Field("local_id", "text", True),
        Field("reader_local_id", "text", True),
        Field("barcode", "text", True),
        Field("branch", "text", True),
        Field("issued_at", "datetime", True),
        Field("due_at", "datetime", True),
        Field("returned_at", "datetime"),
        Field("return_branch", "text"),
        Field("renewals", "int"),
        Field("renewed_at", "datetime"),
        Field("updated_at", "datetime", True),
    ),
}


# Which field says the member a row belongs to, when several members share one ILS instance:
# an item to its home branch, a loan to its lending branch. Readers have none: a reader account
# of a shared instance is valid at every branch, so each member reads them all.
OWNER_FIELDS: dict[str, str] = {"items": "home_branch", "loans": "branch"}


def field_names(entity: str) -> list[str]:
    return [f.name for f in CANONICAL_FIELDS[entity]]

"""The entity registry: every kind of record the hub syncs, declared once.

An entity is one declaration (`EntitySpec`): its canonical fields (what a profile maps its ILS
columns onto), its key and cursor, the validation rules of its Great Expectations suite, which
columns make a row's content hash and which a quarantined row keeps, the fields that name a
member, its central mirror table and its merge rule. Extraction, validation, the merge,
reconcile, backfill and the onboarding check read these; nothing else lists entities.

Adding an entity: declare an `EntitySpec` (`register` it, or add it to `DECLARED`) and map it
in the profiles that have it. An `optional` entity may be left unmapped by a profile; its rows
go to a mirror table of its own (`domain.schema.mirror_table`) by the generic merge rule.

Fields of kind "human_text" (names, titles) may arrive in a legacy Chinese encoding and are
normalised by `domain.encoding` before validation. No pure code here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

FIELD_KINDS = ("text", "human_text", "datetime", "date", "int")


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # one of FIELD_KINDS
    required: bool = False
    # A time that has happened when the row is read (issued, returned, last seen): never later
    # than the hub's clock plus the tolerance (rule `timestamp_not_in_future`). A due date is
    # not one: it is in the future by nature.
    past: bool = False


@dataclass(frozen=True)
class Rule:
    """One validation rule: a Great Expectations expectation (its snake_case type and kwargs)
    and the name a quarantined row records. `detail` names a row column holding the specific
    reason (id_check_digit, name_encoding, ...), recorded beside the rule."""

    name: str
    expectation: str
    kwargs: dict
    detail: str | None = None

    @property
    def columns(self) -> set[str]:
        cols = {self.kwargs[k] for k in ("column", "column_A", "column_B") if k in self.kwargs}
        return cols | set(self.kwargs.get("column_list", ()))


@dataclass(frozen=True)
class EntitySpec:
    name: str
    row_name: str  # one row, in rule names: reader_key_unique, item_key_not_null
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()  # beyond the standard ones (see `suite_rules`)
    key: str = "local_id"
    cursor: str = "updated_at"
    optional: bool = False  # a profile may leave it unmapped
    # Branch-code fields whose member must be known (rule `member_code_known`); the first one
    # says which member a row belongs to where several members share one ILS instance.
    member_fields: tuple[str, ...] = ()
    owned_by_branch: bool = False  # the first member field picks a shared instance's rows
    hashed: tuple[str, ...] = ()  # prepared columns that make the content hash
    shown: tuple[str, ...] = ()  # prepared columns a quarantined row keeps (masked forms only)
    # Values computed per row by name (`domain.prepare.FACTS`) that a rule reads.
    facts: tuple[str, ...] = ()
    mirror: str = ""  # central mirror table; default `member_<name>`
    merge: str = "mirror"  # the merge rule in `tasks.sync.merge`: readers | items | loans | mirror

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def hashed_columns(self) -> tuple[str, ...]:
        """What a row's content hash covers: the declared columns, by default every field but
        the key and the cursor (a row re-read with a new timestamp but the same facts is no
        change)."""
        return self.hashed or tuple(f.name for f in self.fields
                                    if f.name not in (self.key, self.cursor))

    @property
    def shown_columns(self) -> tuple[str, ...]:
        """What a quarantined row keeps: the declared columns, by default only its key (a
        new entity shows nothing it has not declared safe to show)."""
        return self.shown or (self.key,)

    @property
    def mirror_name(self) -> str:
        return self.mirror or f"member_{self.name}"

    @property
    def owner_field(self) -> str | None:
        return self.member_fields[0] if self.owned_by_branch and self.member_fields else None

    def has_human_text(self) -> bool:
        return any(f.kind == "human_text" for f in self.fields)


# -- the entities the hub syncs -----------------------------------------------------------------
READERS = EntitySpec(
    name="readers", row_name="reader",
    fields=(
        Field("local_id", "text", True),
        Field("card_number", "text", True),
        Field("id_number", "text", True),
        Field("branch", "text", True),
        Field("birth_date", "date"),
        Field("sex", "text"),
        Field("registered_on", "date", past=True),  # enrolment: decides the home member
        Field("name", "human_text"),  # optional: privacy minimisation is the merge's call
        Field("updated_at", "datetime", True, past=True),
    ),
    rules=(
        Rule("card_number_present", "expect_column_values_to_not_be_null",
             {"column": "card_masked"}),
        # Duplicate cards within one member, found by the card's keyed hash.
        Rule("card_number_unique", "expect_compound_columns_to_be_unique",
             {"column_list": ["_member", "card_key"], "ignore_row_if": "any_value_is_missing"}),
        Rule("id_number_valid", "expect_column_values_to_be_in_set",
             {"column": "id_status", "value_set": ["valid", "permit"]}, detail="id_rule"),
    ),
    member_fields=("branch",),
    hashed=("reader_key", "card_masked", "branch", "birth_date", "sex", "registered_on",
            "id_status"),
    # Never a birth date, age or birth year beside a masked number: the eight digits the mask
    # hides are the birth date (domain.identity.mask_id_number).
    shown=("local_id", "card_masked", "id_masked", "id_rule", "branch"),
    mirror="reader_accounts", merge="readers",
)

ITEMS = EntitySpec(
    name="items", row_name="item",
    fields=(
        Field("local_id", "text", True),
        Field("barcode", "text", True),
        Field("home_branch", "text", True),
        Field("holding_branch", "text", True),
        Field("on_loan_due", "datetime"),
        Field("last_seen", "datetime", past=True),
        Field("item_type", "text"),
        Field("title", "human_text"),
        Field("updated_at", "datetime", True, past=True),
    ),
    rules=(
        Rule("barcode_present", "expect_column_values_to_not_be_null", {"column": "barcode"}),
        # A member's own item carries its barcode prefix, a consortium copy another member's:
        # the prefix-to-owner map is the consortium's, so this fact is computed, then checked.
        Rule("barcode_matches_owner", "expect_column_values_to_be_in_set",
             {"column": "barcode_owner_ok", "value_set": [True]}),
    ),
    member_fields=("home_branch", "holding_branch"), owned_by_branch=True,
    hashed=("barcode", "home_branch", "holding_branch", "on_loan_due", "last_seen", "item_type"),
    shown=("local_id", "barcode", "home_branch", "holding_branch", "item_type", "updated_at"),
    facts=("barcode_owner",),
    mirror="member_items", merge="items",
)

LOANS = EntitySpec(
    name="loans", row_name="loan",
    fields=(
        Field("local_id", "text", True),
        Field("reader_local_id", "text", True),
        Field("barcode", "text", True),
        Field("branch", "text", True),
        Field("issued_at", "datetime", True, past=True),
        Field("due_at", "datetime", True),
        Field("returned_at", "datetime", past=True),
        Field("return_branch", "text"),
        Field("renewals", "int"),
        Field("renewed_at", "datetime", past=True),
        Field("updated_at", "datetime", True, past=True),
    ),
    rules=(
        Rule("barcode_present", "expect_column_values_to_not_be_null", {"column": "barcode"}),
        Rule("issued_present", "expect_column_values_to_not_be_null", {"column": "issued_at"}),
        # due >= issued, and a missing due date fails too (rows with either missing compared).
        Rule("issued_not_after_due", "expect_column_pair_values_a_to_be_greater_than_b",
             {"column_A": "due_at", "column_B": "issued_at", "or_equal": True,
              "ignore_row_if": "both_values_are_missing"}),
        Rule("issued_not_after_return", "expect_column_pair_values_a_to_be_greater_than_b",
             {"column_A": "returned_at", "column_B": "issued_at", "or_equal": True,
              "ignore_row_if": "either_value_is_missing"}),
    ),
    member_fields=("branch", "return_branch"), owned_by_branch=True,
    hashed=("reader_local_id", "barcode", "branch", "issued_at", "due_at", "returned_at",
            "return_branch", "renewals"),
    shown=("local_id", "reader_local_id", "barcode", "branch", "issued_at", "due_at",
           "returned_at", "updated_at"),
    mirror="loans", merge="loans",
)

REGISTRY: dict[str, EntitySpec] = {s.name: s for s in (READERS, ITEMS, LOANS)}


def register(spec: EntitySpec) -> EntitySpec:
    """Declare one more entity (after the built-in ones, in declaration order)."""
    unknown = {f.kind for f in spec.fields} - set(FIELD_KINDS)
    if unknown:
        raise ValueError(f"entity {spec.name!r}: unknown field kind(s) {sorted(unknown)}")
    if spec.key not in spec.field_names or spec.cursor not in spec.field_names:
        raise ValueError(f"entity {spec.name!r}: key and cursor must be among its fields")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Forget a declared entity (tests that declare a toy one)."""
    if REGISTRY.get(name) in (READERS, ITEMS, LOANS):
        raise ValueError(f"{name!r} is built in")
    REGISTRY.pop(name, None)


def entities() -> tuple[str, ...]:
    """Every declared entity, in merge order (readers before the loans that name them)."""
    return tuple(REGISTRY)


def spec(entity: str) -> EntitySpec:
    try:
        return REGISTRY[entity]
    except KeyError:
        raise ValueError(f"unknown entity {entity!r}; one of {', '.join(REGISTRY)}") from None


def is_optional(entity: str) -> bool:
    return spec(entity).optional


def field_names(entity: str) -> list[str]:
    return spec(entity).field_names


def fields(entity: str) -> tuple[Field, ...]:
    return spec(entity).fields


def suite_rules(entity: str) -> tuple[Rule, ...]:
    """The entity's whole rule list: the standard rules every entity has (its key present and
    unique within each member, its member codes known, its texts decodable, none of its past
    times in the future), then its own."""
    s = spec(entity)
    standard = [
        Rule(f"{s.row_name}_key_not_null", "expect_column_values_to_not_be_null",
             {"column": s.key}),
        Rule(f"{s.row_name}_key_unique", "expect_compound_columns_to_be_unique",
             {"column_list": ["_member", s.key], "ignore_row_if": "any_value_is_missing"}),
    ]
    standard += [Rule("member_code_known", "expect_column_values_to_be_in_set",
                      {"column": member_column(f), "value_set": {"$PARAMETER": "member_codes"}})
                 for f in s.member_fields]
    if s.has_human_text():
        standard.append(Rule("text_encoding", "expect_column_values_to_be_null",
                             {"column": "text_problem"}, detail="text_problem"))
    standard += [Rule("timestamp_not_in_future", "expect_column_values_to_be_between",
                      {"column": f.name, "max_value": {"$PARAMETER": "latest_time"}})
                 for f in s.fields if f.past]
    return tuple(standard[:2]) + s.rules + tuple(standard[2:])


def member_column(branch_field: str) -> str:
    """The computed column holding the member a branch field maps to."""
    return f"{branch_field}_member"


# Kept for the callers that read the registry as plain tables.
def canonical_fields() -> dict[str, tuple[Field, ...]]:
    return {name: s.fields for name, s in REGISTRY.items()}


def __getattr__(name: str):
    """The registry as the constants older code reads (evaluated now, not at import)."""
    if name == "ENTITIES":
        return entities()
    if name == "CANONICAL_FIELDS":
        return canonical_fields()
    if name == "OWNER_FIELDS":
        return {n: s.owner_field for n, s in REGISTRY.items() if s.owner_field}
    raise AttributeError(name)

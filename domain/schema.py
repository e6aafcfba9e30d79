"""The central store, in SQLAlchemy Core: one schema that runs unchanged on SQLite and PostgreSQL.

Per-member tables (`reader_accounts`, `member_items`, `loans`) mirror what each ILS last showed,
keyed by (member, local id), with a `row_hash` so a re-read row that did not change is skipped.
`items` holds the one consortium-wide state per barcode, derived from `circulation_events`.
No resident ID number is stored: readers are keyed by an HMAC and shown masked.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for event logs.
Id = BigInteger().with_variant(Integer(), "sqlite")

members = Table(
    "members",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("region", String(100), nullable=False),
    Column("profile", String(50), nullable=False),
    Column("sync_enabled", Boolean, nullable=False),
    Column("writeback_enabled", Boolean, nullable=False),
)

readers = Table(
    "readers",
    metadata,
    Column("reader_key", String(64), primary_key=True),  # HMAC-SHA256 of the normalised ID
    Column("id_masked", String(32), nullable=False),
    Column("id_status", String(20), nullable=False),
    Column("birth_date", DateTime),
    Column("sex", String(1)),
    Column("home_member", String(32)),
    Column("first_seen_at", DateTime, nullable=False),
)

reader_accounts = Table(
    "reader_accounts",
    metadata,
    Column("member", String(32), primary_key=True),
    Column("local_id", String(64), primary_key=True),
    Column("reader_key", String(64), ForeignKey("readers.reader_key"), index=True),
    Column("card_masked", String(40)),
    Column("home_branch", String(32)),
    Column("flag", String(40)),  # e.g. birth date in the ILS contradicts the ID number
    Column("registered_on", DateTime),  # enrolment at that member: the earliest is the home
    Column("row_hash", String(32), nullable=False),
    Column("source_updated_at", DateTime),
)

member_items = Table(
    "member_items",
    metadata,
    Column("member", String(32), primary_key=True),
    Column("local_id", String(64), primary_key=True),
    Column("barcode", String(40), nullable=False, index=True),
    Column("is_copy", Boolean, nullable=False),  # a consortium copy of a foreign book
    Column("holding_member", String(32)),
    Column("on_loan_due", DateTime),
    Column("last_seen", DateTime),
    Column("row_hash", String(32), nullable=False),
    Column("source_updated_at", DateTime),
)

items = Table(
    "items",
    metadata,
    Column("barcode", String(40), primary_key=True),
    Column("owner", String(32), nullable=False),
    Column("holder", String(32), nullable=False),
    Column("status", String(20), nullable=False),  # home | on_loan | away | in_transit
    Column("on_loan", Boolean, nullable=False),
    Column("due", DateTime),
    Column("lent_by", String(32)),
    Column("state_at", DateTime),
)

loans = Table(
    "loans",
    metadata,
    Column("member", String(32), primary_key=True),  # the lending member
    Column("local_id", String(64), primary_key=True),
    Column("barcode", String(40), nullable=False, index=True),
    Column("reader_key", String(64), index=True),
    # The lending member's own account id: a loan whose account is held in quarantine waits
    # unlinked and is linked when the account is merged (tasks.readers.links).
    Column("reader_local_id", String(64)),
    Column("issued_at", DateTime, nullable=False),
    Column("due_at", DateTime),
    Column("renewals", Integer, nullable=False, default=0),
    Column("source_returned_at", DateTime),  # what the lending ILS shows
    Column("returned_at", DateTime),  # what the consortium knows (may come from another member)
    Column("return_member", String(32)),
    Column("pushed_returned_at", DateTime),  # the return time the hub wrote into that ILS
    Column("row_hash", String(32), nullable=False),
    Column("source_updated_at", DateTime),
)

circulation_events = Table(
    "circulation_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_key", String(200), nullable=False, unique=True),  # a replay cannot duplicate
    Column("barcode", String(40), nullable=False),
    Column("kind", String(20), nullable=False),  # issued | renewed | returned | seen
    Column("member", String(32), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("loan_member", String(32)),
    Column("loan_local_id", String(64)),
    Column("due_at", DateTime),
    Column("recorded_at", DateTime, nullable=False),
    Index("ix_events_barcode_at", "barcode", "at"),
)

watermarks = Table(
    "watermarks",
    metadata,
    Column("member", String(32), primary_key=True),
    Column("entity", String(20), primary_key=True),
    Column("cursor_value", DateTime),
    Column("updated_at", DateTime, nullable=False),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("member", String(32), nullable=False),
    Column("entity", String(20), nullable=False),
    Column("row_key", String(64), nullable=False),
    Column("rules", JSON, nullable=False),  # names of the expectations / rules broken
    Column("row_masked", JSON, nullable=False),  # the row as seen, ID numbers masked
    Column("first_seen_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("released_at", DateTime),
    UniqueConstraint("member", "entity", "row_key", name="uq_quarantine_row"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("target", String(32), nullable=False),  # the member whose ILS must apply it
    Column("command_key", String(200), nullable=False),
    # close_loan | set_item | transfer | transfer_arrived
    Column("kind", String(30), nullable=False),
    Column("barcode", String(40), nullable=False),
    Column("payload", JSON, nullable=False),
    # pending | applied | superseded | dead | resolved | unsupported (see
    # circhub.tasks.writeback.outbox)
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),  # deliveries begun
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("applied_at", DateTime),
    Column("next_attempt_at", DateTime),  # backoff after a failure: not tried before this
    Column("outcome", Text),  # what the last apply did, or why it was not applied
    UniqueConstraint("target", "command_key", name="uq_outbox_command"),
    Index("ix_outbox_target_status", "target", "status"),
)

# Conflicts no rule may settle alone (circhub.domain.conflicts): listed with the reason, held back
# from the replay or from write-back until the data explains them or an operator releases them.
circulation_exceptions = Table(
    "circulation_exceptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("barcode", String(40), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("subject", String(200), nullable=False),  # the event, loan or row it is about
    Column("source", String(20), nullable=False),  # replay | quarantine
    Column("detail", Text, nullable=False),
    Column("members", JSON, nullable=False),
    Column("waiting_on", String(32)),  # a member whose next sync may still explain it
    Column("status", String(20), nullable=False),  # waiting | open | released | cleared
    Column("first_seen_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("resolved_at", DateTime),
    Column("note", Text),
    UniqueConstraint("barcode", "reason", "subject", name="uq_circulation_exception"),
    Index("ix_exceptions_status", "status", "waiting_on"),
)

# A member an operator took out of the schedule for a while (`circhub member pause CODE
# --reason ...`): sync and push pass it by until it is resumed. Unlike `sync = false` in the
# config it needs no deployment, and it carries who-knows-why for the next person on duty.
member_pauses = Table(
    "member_pauses",
    metadata,
    Column("member", String(32), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("paused_at", DateTime, nullable=False),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("member", String(32), nullable=False, index=True),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("status", String(20), nullable=False),  # ok | failed
    Column("counts", JSON),
    Column("error", Text),
)

drift = Table(
    "drift",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("member", String(32), nullable=False, index=True),
    Column("entity", String(20), nullable=False),
    Column("local_id", String(64), nullable=False),
    Column("kind", String(20), nullable=False),  # missing (at the hub) | extra (gone at source)
    Column("action", String(40), nullable=False),
    Column("found_at", DateTime, nullable=False),
)

backfills = Table(
    "backfills",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("member", String(32), nullable=False),
    Column("entity", String(20), nullable=False),
    Column("since", DateTime, nullable=False),
    Column("until", DateTime, nullable=False),
    Column("window_seconds", Integer, nullable=False),
    Column("done_until", DateTime, nullable=False),  # every window before this is committed
    Column("rows", BigInteger, nullable=False, default=0),
    Column("status", String(20), nullable=False),  # running | done
    Column("started_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("member", "entity", "since", "until", name="uq_backfill_range"),
)

# Which HMAC key the reader keys are under, by a check value (never the key). A process whose
# key does not match the current row refuses to write: it would split every reader in two.
reader_key_epochs = Table(
    "reader_key_epochs",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("activated_at", DateTime, nullable=False),
    Column("retired_at", DateTime),  # set by a key rotation; the current key has none
    Column("note", Text),  # what the rotation did (counts only)
)

# -- per-member mirrors of declared entities (domain.records) ------------------------------------
_KIND_TYPES = {"text": lambda: String(200), "human_text": lambda: Text(),
               "datetime": lambda: DateTime(), "date": lambda: DateTime(), "int": lambda: Integer()}


def mirror_table(entity_spec) -> Table:
    """The central mirror of an entity: the table its declaration names (readers, items and
    loans have their own, above), or, for an entity merged by the generic rule, a table
    `member_<entity>` keyed by (member, local_id) with one column per canonical field. A new
    entity's table reaches a store through a migration like any other (Alembic autogenerates
    it from this metadata)."""
    name = entity_spec.mirror_name
    if name in metadata.tables:
        return metadata.tables[name]
    columns = [Column(f.name, _KIND_TYPES[f.kind]()) for f in entity_spec.fields
               if f.name not in ("local_id", entity_spec.cursor)]
    return Table(name, metadata,
                 Column("member", String(32), primary_key=True),
                 Column("local_id", String(64), primary_key=True),
                 *columns,
                 Column("row_hash", String(32), nullable=False),
                 Column("source_updated_at", DateTime))


def forget_mirror_table(entity_spec) -> None:
    """Drop a generic entity's mirror from the declared metadata (a test that declared a toy
    entity and unregisters it: otherwise every later store would be built with its table)."""
    table = metadata.tables.get(entity_spec.mirror_name)
    if table is not None and not entity_spec.mirror:
        metadata.remove(table)

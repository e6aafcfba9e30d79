"""Row hashes over the documented serialization: every stored hash marked as made the old way.

The hashes stored before this revision were pandas' hash of pandas' text of a row
(`circhub.domain.rowhash_legacy`); the new ones are BLAKE2b over the explicit serialization of
`circhub.domain.rowhash`. A hash cannot be recomputed from the central store alone: it covers
source values the hub does not keep (a reader's birth date and sex, an item's type and home
branch, branch codes where the store keeps members). So this revision marks each stored hash
(`v1:` before it; nothing else in the row changes) and the row gets its new hash where the hub
next reads it: a sync that re-reads it writes it with the new hash (its content unchanged), and
reconcile, which reads every row, compares a marked hash with the old function and stores the
new hash without calling the row changed. docs/row-hashes.md.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MARK = "v1:"  # frozen: domain.rowhash_legacy.LEGACY_MARK
HASHED_MIRRORS = ("reader_accounts", "member_items", "loans")


def upgrade() -> None:
    for name in HASHED_MIRRORS:
        table = sa.table(name, sa.column("row_hash", sa.String(32)))
        op.execute(table.update().where(~table.c.row_hash.startswith(MARK))
                   .values(row_hash=sa.literal(MARK) + table.c.row_hash))


def downgrade() -> None:
    for name in HASHED_MIRRORS:
        table = sa.table(name, sa.column("row_hash", sa.String(32)))
        op.execute(table.update().where(table.c.row_hash.startswith(MARK))
                   .values(row_hash=sa.func.substr(table.c.row_hash, len(MARK) + 1)))

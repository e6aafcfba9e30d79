"""watermarks.last_key dropped: the key of the newest row a watermark was moved to, written
at every merge and read by no code (extraction re-reads ties at the mark with `>=`; the
mutation runs found every change to it equivalent).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("watermarks") as table:  # SQLite rebuilds the table
        table.drop_column("last_key")


def downgrade() -> None:
    with op.batch_alter_table("watermarks") as table:
        table.add_column(sa.Column("last_key", sa.String(64)))

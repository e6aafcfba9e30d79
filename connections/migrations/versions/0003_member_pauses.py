"""member_pauses: members an operator took out of the schedule for a while.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "member_pauses",
        sa.Column("member", sa.String(32), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("paused_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("member_pauses")

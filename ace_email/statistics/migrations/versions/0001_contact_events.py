"""contact_events: every event of every contact, keyed for idempotent recording.

Revision ID: 0001
Revises:
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "contact_events",
        sa.Column("contact_id", sa.String(200), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("detail", sa.String(200), nullable=False),
        sa.Column("sender", sa.String(320), nullable=True),
        sa.PrimaryKeyConstraint("contact_id", "event", "seq"),
    )
    op.create_index("ix_contact_events_at", "contact_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_contact_events_at", table_name="contact_events")
    op.drop_table("contact_events")

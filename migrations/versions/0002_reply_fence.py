"""A reply's fence and lease: one writer per reply, one live reply per conversation.

- ``messages.attempt``: which attempt at a reply may write it (a retry takes the next);
- ``messages.lease_until``: until when (database clock) the writing turn holds a live reply;
  it replaces ``messages.updated_at``, the old heartbeat;
- a CHECK constraint on ``messages.status``, and a partial unique index: one live reply per
  conversation. Replies left live by the old release are marked interrupted first (its turns
  are gone once this runs), so the index can be built.

Revision ID: 0002_reply_fence
Revises: 0001_baseline
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_reply_fence"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

LIVE = "status IN ('streaming', 'stopping')"
STATUSES = "status IN ('complete', 'streaming', 'stopping', 'error', 'interrupted')"


def upgrade() -> None:
    op.execute(f"UPDATE messages SET status = 'interrupted' WHERE {LIVE}")
    op.execute(f"UPDATE messages SET status = 'error' WHERE NOT ({STATUSES})")
    with op.batch_alter_table("messages", recreate="auto") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("lease_until", sa.Float(), nullable=True))
        batch.drop_column("updated_at")
        batch.create_check_constraint("ck_messages_status", sa.text(STATUSES))
    op.create_index(
        "uq_messages_one_live_reply",
        "messages",
        ["conversation_id"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_messages_one_live_reply", table_name="messages")
    with op.batch_alter_table("messages", recreate="auto") as batch:
        batch.drop_constraint("ck_messages_status", type_="check")
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_column("lease_until")
        batch.drop_column("attempt")

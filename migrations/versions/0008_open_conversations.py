"""The open conversations' index: ``conversations (updated_at) WHERE outcome IS NULL``.

The abandoned sweep (chat/outcomes.py) runs each minute in every process and looks for open
conversations idle for a while; without this index it read every conversation ever held (only
``updated_at`` was indexed), on SQLite under the write lock: writers waited 85 ms a sweep with
300,000 conversations, and more as the history grew.

Revision ID: 0008_open_conversations
Revises: 0007_outcomes
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_open_conversations"
down_revision = "0007_outcomes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_conversations_open",
        "conversations",
        ["updated_at"],
        sqlite_where=sa.text("outcome IS NULL"),
        postgresql_where=sa.text("outcome IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_open", table_name="conversations")

"""Each conversation's outcome: how it ended, honestly.

- ``conversations.outcome``: NULL while open; ``resolved`` (the customer said it solved it),
  ``unresolved`` (said it didn't), ``escalated`` (asked for a person), ``abandoned`` (no answer
  for a while: set by the sweep, cleared when the customer comes back);
- ``conversations.outcome_at``: when it was set;
- ``ix_conversations_open``: ``conversations (updated_at) WHERE outcome IS NULL``, so the
  abandoned sweep (each minute, in every process) reads only the open conversations, not every
  one ever held (on SQLite under the write lock: with 300,000 conversations, writers waited
  85 ms a sweep without it).

(Columns added in place: on SQLite, rebuilding ``conversations`` would drop its search triggers.)

Revision ID: 0007_outcomes
Revises: 0006_help_articles
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_outcomes"
down_revision = "0006_help_articles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("outcome", sa.String(16), nullable=True))
    op.add_column("conversations", sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_conversations_open",
        "conversations",
        ["updated_at"],
        sqlite_where=sa.text("outcome IS NULL"),
        postgresql_where=sa.text("outcome IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_open", table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("outcome_at")
        batch.drop_column("outcome")

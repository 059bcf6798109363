"""Messages become a tree, so regenerate and edit keep the earlier versions.

- ``messages.parent_id``: the message this one follows (a reply's question, a question's previous
  answer; none for a conversation's first). Versions of a message share its parent.
- ``messages.shown``: on the path the conversation shows (and the model reads). Setting a version
  aside clears it on that version and everything after it; switching back sets it again.

Existing conversations become one path: each message follows the one before it, all shown.

Revision ID: 0004_message_versions
Revises: 0003_lease_holder
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_message_versions"
down_revision = "0003_lease_holder"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("shown", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.create_foreign_key(
            "fk_messages_parent_id_messages", "messages", ["parent_id"], ["id"], ondelete="CASCADE"
        )
    op.execute(
        "UPDATE messages SET parent_id = (SELECT MAX(earlier.id) FROM messages AS earlier"
        " WHERE earlier.conversation_id = messages.conversation_id AND earlier.id < messages.id)"
    )
    # a message's versions (and the parent's side of the foreign key); with the conversation, the
    # versions of its first message (no parent)
    op.create_index("ix_messages_parent", "messages", ["parent_id", "conversation_id"])


def downgrade() -> None:
    op.drop_index("ix_messages_parent", table_name="messages")
    op.execute("DELETE FROM messages WHERE NOT shown")
    with op.batch_alter_table("messages") as batch:
        batch.drop_constraint("fk_messages_parent_id_messages", type_="foreignkey")
        batch.drop_column("shown")
        batch.drop_column("parent_id")

"""Which process writes a live reply (``messages.lease_holder``), so a server restarted on the
same machine sees at once that the replies its killed predecessor was writing are cut short.

Revision ID: 0003_lease_holder
Revises: 0002_reply_fence
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_lease_holder"
down_revision = "0002_reply_fence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("lease_holder", sa.String(120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("lease_holder")

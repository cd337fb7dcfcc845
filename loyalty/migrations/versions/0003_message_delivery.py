"""message delivery status and unsubscribe token

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 06:55:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("provider_status_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("unsubscribe_token", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_messages_unsubscribe_token"), ["unsubscribe_token"]
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_messages_unsubscribe_token"), type_="unique")
        batch_op.drop_column("unsubscribe_token")
        batch_op.drop_column("provider_status_at")
        batch_op.drop_column("provider_status")

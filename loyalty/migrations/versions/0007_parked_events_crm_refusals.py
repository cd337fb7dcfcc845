"""events.parked_at (processing failed for good); sync_cursors.refusals (CRM backoff)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 23:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parked_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("sync_cursors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refusals", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("sync_cursors", schema=None) as batch_op:
        batch_op.drop_column("refusals")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("parked_at")

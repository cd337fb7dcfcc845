"""enrollments.parked_at: a run that failed for good is not woken again at every tick

Before, a waiting enrollment whose run failed for good (a dead letter) was queued
again by each wake-up tick, adding one more dead letter every 30 seconds.
`loyalty dlq replay` clears the mark.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 10:20:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parked_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_column("parked_at")

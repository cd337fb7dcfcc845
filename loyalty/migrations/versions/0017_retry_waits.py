"""retry_waits: a row whose job waits for a worker's delayed retry is not relayed meanwhile

Before, the relay queued an event (or a redemption, or a shop delivery) again every
tick while its own retries were still pending, each copy starting a retry chain of
its own and ending as one more dead letter.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 09:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retry_waits",
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("row_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("actor", "row_id"),
    )


def downgrade() -> None:
    op.drop_table("retry_waits")

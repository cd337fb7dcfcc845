"""crm sync: pushed values and refused hash on crm_links

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 07:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    with op.batch_alter_table("crm_links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pushed_values", json_type, nullable=True))
        batch_op.add_column(sa.Column("failed_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("crm_links", schema=None) as batch_op:
        batch_op.drop_column("failed_hash")
        batch_op.drop_column("pushed_values")

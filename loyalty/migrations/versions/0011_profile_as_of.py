"""members.profile_as_of: the source time of the newest profile applied

A shop may deliver a customer's updates out of order (Shopify and WooCommerce
both retry and do not promise order); an update older than the one applied
changes nothing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 09:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("profile_as_of", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("profile_as_of")

"""members.import_digest: what the last import saw of each member, to skip unchanged rows

The digest of the member's last imported row, bound to the member's `updated_at`
at the time: a row whose raw content is the same, for a member nobody changed
since, is known unchanged without being parsed again.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 05:20:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_digest", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("import_digest")

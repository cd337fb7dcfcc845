"""date scan indexes

Indexes the date-trigger scan reads through: enrolment anniversaries by
``members.enrolled_at`` and points expiry by ``points_ledger.expires_at``
(birthdays already use ``ix_members_birthday``). Indexes only: no column to
backfill.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 06:45:00.000000

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_members_enrolled_at"), ["enrolled_at"], unique=False)
    with op.batch_alter_table("points_ledger", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_points_ledger_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("points_ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_points_ledger_expires_at"))
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_members_enrolled_at"))

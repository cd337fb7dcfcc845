"""redemptions (points turned into reward codes) and reward_notices (reward.available once per rise)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_STATES = "state IN ('pending', 'issued', 'failed')"


def upgrade() -> None:
    op.create_table(
        "redemptions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("reward_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("value", sa.Numeric(precision=14, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("shop", sa.String(length=32), nullable=True),
        sa.Column("shop_code_id", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(_STATES, name=op.f("ck_redemptions_state")),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_redemptions_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        sa.UniqueConstraint("code", name=op.f("uq_redemptions_code")),
        sa.UniqueConstraint(
            "member_id", "idempotency_key", name=op.f("uq_redemptions_member_id_idempotency_key")
        ),
    )
    op.create_index(op.f("ix_redemptions_member_id"), "redemptions", ["member_id"])
    op.create_index(op.f("ix_redemptions_state"), "redemptions", ["state"])
    op.create_table(
        "reward_notices",
        sa.Column("id", _ID, nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("reward_id", sa.String(length=64), nullable=False),
        sa.Column("reached", sa.Boolean(), nullable=False),
        sa.Column("crossings", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_reward_notices_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_notices")),
        sa.UniqueConstraint(
            "member_id", "reward_id", name=op.f("uq_reward_notices_member_id_reward_id")
        ),
    )
    op.create_index(op.f("ix_reward_notices_member_id"), "reward_notices", ["member_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_reward_notices_member_id"), table_name="reward_notices")
    op.drop_table("reward_notices")
    op.drop_index(op.f("ix_redemptions_state"), table_name="redemptions")
    op.drop_index(op.f("ix_redemptions_member_id"), table_name="redemptions")
    op.drop_table("redemptions")

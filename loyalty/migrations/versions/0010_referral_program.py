"""referral program: held and reviewed referrals, link clicks, friend discount codes

Referrals get the referee's first order, a hold until its return window is over,
the fraud checks' reasons and the review; their status gains `held` and `review`.
`referral_clicks` records visits of referral links (digests only);
`referral_friend_codes` holds the one discount code each referrer's link gives.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 10:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_BEFORE = "status IN ('pending', 'completed', 'rejected')"
_AFTER = "status IN ('pending', 'held', 'review', 'completed', 'rejected')"
_CODE_STATES = "state IN ('pending', 'issued', 'failed')"


def upgrade() -> None:
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("order_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("ordered_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("hold_until", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("reasons", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("review_note", sa.Text(), nullable=True))
        batch_op.drop_constraint(op.f("ck_referrals_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_referrals_status"), _AFTER)
        batch_op.create_index(batch_op.f("ix_referrals_hold_until"), ["hold_until"])
    op.create_table(
        "referral_clicks",
        sa.Column("id", _ID, nullable=False),
        sa.Column("referrer_id", _ID, nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("ip_hash", sa.String(length=64), nullable=True),
        sa.Column("user_agent_hash", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["referrer_id"], ["members.id"], name=op.f("fk_referral_clicks_referrer_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_clicks")),
    )
    op.create_index(op.f("ix_referral_clicks_referrer_id"), "referral_clicks", ["referrer_id"])
    op.create_index(op.f("ix_referral_clicks_at"), "referral_clicks", ["at"])
    op.create_table(
        "referral_friend_codes",
        sa.Column("id", _ID, nullable=False),
        sa.Column("referrer_id", _ID, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("reward_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("shop", sa.String(length=32), nullable=True),
        sa.Column("shop_code_id", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(_CODE_STATES, name=op.f("ck_referral_friend_codes_state")),
        sa.ForeignKeyConstraint(
            ["referrer_id"],
            ["members.id"],
            name=op.f("fk_referral_friend_codes_referrer_id_members"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral_friend_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_referral_friend_codes_code")),
        sa.UniqueConstraint("referrer_id", name=op.f("uq_referral_friend_codes_referrer_id")),
    )


def downgrade() -> None:
    op.drop_table("referral_friend_codes")
    op.drop_index(op.f("ix_referral_clicks_at"), table_name="referral_clicks")
    op.drop_index(op.f("ix_referral_clicks_referrer_id"), table_name="referral_clicks")
    op.drop_table("referral_clicks")
    op.execute("UPDATE referrals SET status = 'pending' WHERE status IN ('held', 'review')")
    with op.batch_alter_table("referrals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referrals_hold_until"))
        batch_op.drop_constraint(op.f("ck_referrals_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_referrals_status"), _BEFORE)
        for column in ("review_note", "reviewed_at", "reasons", "hold_until", "ordered_at"):
            batch_op.drop_column(column)
        batch_op.drop_column("order_id")

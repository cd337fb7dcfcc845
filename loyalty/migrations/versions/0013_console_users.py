"""console: users, sign-in failures, journey pauses, console actions, entry refusals and
step counts; indexes for the console's per-journey and per-step figures

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-01 05:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", _ID, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_sign_in_at", sa.DateTime(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "role IN ('viewer', 'marketer', 'operator')", name=op.f("ck_console_users_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_users")),
        sa.UniqueConstraint("email", name=op.f("uq_console_users_email")),
    )
    op.create_table(
        "sign_in_failures",
        sa.Column("id", _ID, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_failures")),
    )
    op.create_index("ix_sign_in_failures_key_at", "sign_in_failures", ["key", "at"])
    op.create_table(
        "journey_pauses",
        sa.Column("journey_id", sa.String(length=128), nullable=False),
        sa.Column("paused_at", sa.DateTime(), nullable=True),
        sa.Column("paused_by", sa.String(length=320), nullable=True),
        sa.Column("resumed_at", sa.DateTime(), nullable=True),
        sa.Column("resumed_by", sa.String(length=320), nullable=True),
        sa.PrimaryKeyConstraint("journey_id", name=op.f("pk_journey_pauses")),
    )
    op.create_table(
        "console_actions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("user_email", sa.String(length=320), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=160), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_actions")),
    )
    op.create_index("ix_console_actions_target", "console_actions", ["target", "at"])
    op.create_table(
        "entry_refusals",
        sa.Column("id", _ID, nullable=False),
        sa.Column("journey_id", sa.String(length=128), nullable=False),
        sa.Column("member_id", _ID, nullable=False),
        sa.Column("occurrence", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_entry_refusals_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entry_refusals")),
        sa.UniqueConstraint(
            "member_id", "journey_id", name=op.f("uq_entry_refusals_member_id_journey_id")
        ),
    )
    op.create_table(
        "journey_step_counts",
        sa.Column("journey_id", sa.String(length=128), nullable=False),
        sa.Column("step_id", sa.String(length=128), nullable=False),
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("entered", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "journey_id", "step_id", "shard", name=op.f("pk_journey_step_counts")
        ),
    )
    op.create_index(
        "ix_enrollments_journey_state_step", "enrollments", ["journey_id", "state", "current_step"]
    )
    op.create_index("ix_enrollments_journey_entered", "enrollments", ["journey_id", "entered_at"])
    op.create_index(
        "ix_enrollments_journey_converted", "enrollments", ["journey_id", "converted_at"]
    )
    op.create_index(
        "ix_messages_journey_step_state", "messages", ["journey_id", "step_id", "state"]
    )
    op.create_index("ix_messages_created_at", "messages", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_created_at", table_name="messages")
    op.drop_index("ix_messages_journey_step_state", table_name="messages")
    op.drop_index("ix_enrollments_journey_converted", table_name="enrollments")
    op.drop_index("ix_enrollments_journey_entered", table_name="enrollments")
    op.drop_index("ix_enrollments_journey_state_step", table_name="enrollments")
    op.drop_table("journey_step_counts")
    op.drop_table("entry_refusals")
    op.drop_index("ix_console_actions_target", table_name="console_actions")
    op.drop_table("console_actions")
    op.drop_table("journey_pauses")
    op.drop_index("ix_sign_in_failures_key_at", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_table("console_users")

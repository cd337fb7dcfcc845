"""console: users, sign-in failures, journey pauses, console actions, entry refusals,
step and message counts, scheduler ticks; indexes for the console's per-journey and per-step figures

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 05:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Keeps journey_message_counts in step with messages, in the same transaction: one row out
# of the old (journey, step, state, reason) and into the new. Spread over 8 shards by
# message id, so that concurrent sends of one step do not queue on one counter row.
_COUNT_FUNCTION = """
CREATE OR REPLACE FUNCTION journey_message_counts_keep() RETURNS trigger AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.journey_id IS NOT NULL THEN
    IF TG_OP = 'UPDATE' AND OLD.state = NEW.state
       AND OLD.error IS NOT DISTINCT FROM NEW.error
       AND OLD.journey_id IS NOT DISTINCT FROM NEW.journey_id
       AND OLD.step_id IS NOT DISTINCT FROM NEW.step_id THEN
      RETURN NEW;
    END IF;
    INSERT INTO journey_message_counts AS c (journey_id, step_id, state, reason, shard, n)
    VALUES (OLD.journey_id, coalesce(OLD.step_id, ''), OLD.state,
            CASE WHEN OLD.state = 'suppressed' THEN left(coalesce(OLD.error, ''), 64) ELSE '' END,
            OLD.id % 8, -1)
    ON CONFLICT (journey_id, step_id, state, reason, shard) DO UPDATE SET n = c.n - 1;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.journey_id IS NOT NULL THEN
    INSERT INTO journey_message_counts AS c (journey_id, step_id, state, reason, shard, n)
    VALUES (NEW.journey_id, coalesce(NEW.step_id, ''), NEW.state,
            CASE WHEN NEW.state = 'suppressed' THEN left(coalesce(NEW.error, ''), 64) ELSE '' END,
            NEW.id % 8, 1)
    ON CONFLICT (journey_id, step_id, state, reason, shard) DO UPDATE SET n = c.n + 1;
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  RETURN NEW;
END
$$ LANGUAGE plpgsql
"""
_COUNT_TRIGGER = """
CREATE TRIGGER messages_keep_journey_counts
AFTER INSERT OR DELETE OR UPDATE OF state, error, journey_id, step_id ON messages
FOR EACH ROW EXECUTE FUNCTION journey_message_counts_keep()
"""
_COUNT_BACKFILL = """
INSERT INTO journey_message_counts (journey_id, step_id, state, reason, shard, n)
SELECT journey_id, coalesce(step_id, ''), state,
       CASE WHEN state = 'suppressed' THEN left(coalesce(error, ''), 64) ELSE '' END,
       id % 8, count(*)
FROM messages WHERE journey_id IS NOT NULL
GROUP BY 1, 2, 3, 4, 5
"""


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
    op.create_table(
        "journey_message_counts",
        sa.Column("journey_id", sa.String(length=128), nullable=False),
        sa.Column("step_id", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "journey_id",
            "step_id",
            "state",
            "reason",
            "shard",
            name=op.f("pk_journey_message_counts"),
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_COUNT_FUNCTION)
        op.execute(_COUNT_TRIGGER)
        op.execute(_COUNT_BACKFILL)
    op.create_table(
        "scheduler_ticks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=160), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=False),
        sa.Column("queued", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=160), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduler_ticks")),
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
    op.drop_table("scheduler_ticks")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS messages_keep_journey_counts ON messages")
        op.execute("DROP FUNCTION IF EXISTS journey_message_counts_keep()")
    op.drop_table("journey_message_counts")
    op.drop_table("journey_step_counts")
    op.drop_table("entry_refusals")
    op.drop_index("ix_console_actions_target", table_name="console_actions")
    op.drop_table("console_actions")
    op.drop_table("journey_pauses")
    op.drop_index("ix_sign_in_failures_key_at", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
    op.drop_table("console_users")

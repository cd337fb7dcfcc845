"""message counts: messages per (journey, step, channel, state, suppression reason) kept by a
trigger on both databases, for every message (with or without a journey); /metrics and the
console read them instead of counting the outbox; the waiting messages indexed by channel and
due time, so that /metrics reads the due outbox from the index alone

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 08:40:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = "journey_id, step_id, channel, state, reason, shard, n"
_KEY = "journey_id, step_id, channel, state, reason, shard"


def _row(side: str, shard: str) -> str:
    """The counter key of the OLD or NEW message (a suppression keeps its reason)."""
    reason = f"substr(coalesce({side}.error, ''), 1, 64)"
    return (
        f"coalesce({side}.journey_id, ''), coalesce({side}.step_id, ''), {side}.channel, "
        f"{side}.state, CASE WHEN {side}.state = 'suppressed' THEN {reason} ELSE '' END, {shard}"
    )


# An update moves one message out of its old counter and into its new one; only the
# columns of the key matter (an error changes the key only for a suppressed message).
_MOVED = """
OLD.state IS DISTINCT FROM NEW.state
OR OLD.channel IS DISTINCT FROM NEW.channel
OR OLD.journey_id IS DISTINCT FROM NEW.journey_id
OR OLD.step_id IS DISTINCT FROM NEW.step_id
OR (NEW.state = 'suppressed' AND OLD.error IS DISTINCT FROM NEW.error)
"""

# PostgreSQL: each connection adds to its own shard (of 8), so that workers sending the
# same step at once seldom wait on one counter row, and a transaction that changes many
# messages of one counter (a batch) holds one row of it rather than one per message id.
_PG_SHARD = "pg_backend_pid() % 8"
_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION message_counts_keep() RETURNS trigger AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    INSERT INTO message_counts AS c ({_COLUMNS})
    VALUES ({_row("OLD", _PG_SHARD)}, -1)
    ON CONFLICT ({_KEY}) DO UPDATE SET n = c.n - 1;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO message_counts AS c ({_COLUMNS})
    VALUES ({_row("NEW", _PG_SHARD)}, 1)
    ON CONFLICT ({_KEY}) DO UPDATE SET n = c.n + 1;
  END IF;
  RETURN NULL;
END
$$ LANGUAGE plpgsql
"""
_PG_TRIGGERS = [
    "CREATE TRIGGER messages_count_insert AFTER INSERT ON messages "
    "FOR EACH ROW EXECUTE FUNCTION message_counts_keep()",
    "CREATE TRIGGER messages_count_update "
    "AFTER UPDATE OF state, error, channel, journey_id, step_id ON messages "
    f"FOR EACH ROW WHEN ({_MOVED}) EXECUTE FUNCTION message_counts_keep()",
    "CREATE TRIGGER messages_count_delete AFTER DELETE ON messages "
    "FOR EACH ROW EXECUTE FUNCTION message_counts_keep()",
]


def _sqlite_upsert(side: str, step: int) -> str:
    sign = "+" if step > 0 else "-"
    return (
        f"INSERT INTO message_counts ({_COLUMNS}) VALUES ({_row(side, '0')}, {step}) "
        f"ON CONFLICT ({_KEY}) DO UPDATE SET n = n {sign} 1;"
    )


# SQLite has one writer at a time: one shard. A table rebuilt by a batch migration loses
# its triggers, so a later migration that rebuilds `messages` must create these again.
_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN "
    f"{_sqlite_upsert('NEW', 1)} END",
    f"CREATE TRIGGER messages_count_update "
    f"AFTER UPDATE OF state, error, channel, journey_id, step_id ON messages "
    f"WHEN {_MOVED.replace('IS DISTINCT FROM', 'IS NOT')} BEGIN "
    f"{_sqlite_upsert('OLD', -1)} {_sqlite_upsert('NEW', 1)} END",
    f"CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN "
    f"{_sqlite_upsert('OLD', -1)} END",
]
_TRIGGER_NAMES = ("messages_count_insert", "messages_count_update", "messages_count_delete")


# The messages there are when the trigger starts (substr counts characters on both).
_BACKFILL = f"""
INSERT INTO message_counts ({_COLUMNS})
SELECT coalesce(journey_id, ''), coalesce(step_id, ''), channel, state,
       CASE WHEN state = 'suppressed' THEN substr(coalesce(error, ''), 1, 64) ELSE '' END,
       0, count(*)
FROM messages
GROUP BY 1, 2, 3, 4, 5
"""


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP TRIGGER IF EXISTS messages_keep_journey_counts ON messages")
        op.execute("DROP FUNCTION IF EXISTS journey_message_counts_keep()")
    op.drop_table("journey_message_counts")
    op.create_table(
        "message_counts",
        sa.Column("journey_id", sa.String(length=128), nullable=False),
        sa.Column("step_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "journey_id",
            "step_id",
            "channel",
            "state",
            "reason",
            "shard",
            name=op.f("pk_message_counts"),
        ),
    )
    if postgresql:
        # No message may change between the count and the trigger: writers wait.
        op.execute("LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE")
        op.execute(_PG_FUNCTION)
        for statement in _PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)
    op.execute(_BACKFILL)
    waiting = sa.text("state IN ('pending', 'deferred')")
    op.create_index(
        "ix_messages_due",
        "messages",
        ["channel", "next_attempt_at", "created_at"],
        postgresql_where=waiting,
        sqlite_where=waiting,
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.drop_index("ix_messages_due", table_name="messages")
    for name in _TRIGGER_NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON messages" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS message_counts_keep()")
    op.drop_table("message_counts")
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
    if postgresql:
        # Migration 0014's trigger and its counts, as they were.
        op.execute(_DOWN_FUNCTION)
        op.execute(
            "CREATE TRIGGER messages_keep_journey_counts "
            "AFTER INSERT OR DELETE OR UPDATE OF state, error, journey_id, step_id ON messages "
            "FOR EACH ROW EXECUTE FUNCTION journey_message_counts_keep()"
        )
        op.execute(
            """
            INSERT INTO journey_message_counts (journey_id, step_id, state, reason, shard, n)
            SELECT journey_id, coalesce(step_id, ''), state,
                   CASE WHEN state = 'suppressed' THEN left(coalesce(error, ''), 64) ELSE '' END,
                   id % 8, count(*)
            FROM messages WHERE journey_id IS NOT NULL
            GROUP BY 1, 2, 3, 4, 5
            """
        )


_DOWN_FUNCTION = """
CREATE OR REPLACE FUNCTION journey_message_counts_keep() RETURNS trigger AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.journey_id IS NOT NULL THEN
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
  RETURN NULL;
END
$$ LANGUAGE plpgsql
"""

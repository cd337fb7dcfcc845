"""provider events name their message; each split's variant per enrollment

`provider_events.message_id` (indexed) names the message a SendGrid event or a
Twilio status callback is about, so a message's delivery events are read by
index; it is filled in for the events already stored (SendGrid's `message_id`
custom argument, Twilio's MessageSid matched to the message's provider id).

`split_choices` keeps the variant (or holdout) of every split an enrollment went
through, not only the first one's (`enrollments.variant`); it is filled in from
the split notes kept in each enrollment's context.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 09:00:00.000000

"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_PG_FILL = [
    """
    UPDATE provider_events AS p SET message_id = m.id
    FROM messages AS m
    WHERE p.provider = 'sendgrid' AND p.payload->>'message_id' ~ '^[0-9]{1,18}$'
      AND m.id = (p.payload->>'message_id')::bigint AND m.channel = 'email'
    """,
    """
    UPDATE provider_events AS p SET message_id = m.id
    FROM messages AS m
    WHERE p.provider = 'twilio' AND p.kind LIKE 'status.%'
      AND m.provider_id = p.payload->>'MessageSid' AND m.channel = 'sms'
    """,
]
_SQLITE_FILL = [
    """
    UPDATE provider_events SET message_id = (
        SELECT m.id FROM messages AS m
        WHERE m.id = CAST(json_extract(provider_events.payload, '$.message_id') AS INTEGER)
          AND m.channel = 'email')
    WHERE provider = 'sendgrid' AND json_extract(payload, '$.message_id') IS NOT NULL
    """,
    """
    UPDATE provider_events SET message_id = (
        SELECT m.id FROM messages AS m
        WHERE m.provider_id = json_extract(provider_events.payload, '$.MessageSid')
          AND m.channel = 'sms' ORDER BY m.id LIMIT 1)
    WHERE provider = 'twilio' AND kind LIKE 'status.%'
    """,
]


_BATCH = 1000


def upgrade() -> None:
    op.add_column("provider_events", sa.Column("message_id", _ID, nullable=True))
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in _PG_FILL if postgresql else _SQLITE_FILL:
        op.execute(statement)
    op.create_index("ix_provider_events_message_id", "provider_events", ["message_id"])
    op.create_table(
        "split_choices",
        sa.Column("enrollment_id", _ID, autoincrement=False, nullable=False),
        sa.Column("split_id", sa.String(length=128), nullable=False),
        sa.Column("journey_id", sa.String(length=128), nullable=False),
        sa.Column("variant", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
            name=op.f("fk_split_choices_enrollment_id_enrollments"),
        ),
        sa.PrimaryKeyConstraint("enrollment_id", "split_id", name=op.f("pk_split_choices")),
    )
    op.create_index(
        "ix_split_choices_journey_split", "split_choices", ["journey_id", "split_id", "variant"]
    )
    _fill_split_choices()


def _fill_split_choices() -> None:
    """Each split note (`context.notes[step].variant`) of the enrollments already there."""
    bind = op.get_bind()
    enrollments = sa.table(
        "enrollments", sa.column("id"), sa.column("journey_id"), sa.column("context")
    )
    query = sa.select(enrollments.c.id, enrollments.c.journey_id, enrollments.c.context).where(
        sa.cast(enrollments.c.context, sa.Text).like('%"variant"%')
    )
    choices = sa.table(
        "split_choices",
        sa.column("enrollment_id"),
        sa.column("split_id"),
        sa.column("journey_id"),
        sa.column("variant"),
    )
    found: list[dict[str, Any]] = []
    for row in bind.execute(query):
        context = json.loads(row.context) if isinstance(row.context, str) else row.context
        for step, note in ((context or {}).get("notes") or {}).items():
            if isinstance(note, dict) and isinstance(note.get("variant"), str):
                found.append(
                    {
                        "enrollment_id": row.id,
                        "split_id": str(step)[:128],
                        "journey_id": row.journey_id,
                        "variant": note["variant"][:64],
                    }
                )
        if len(found) >= _BATCH:
            bind.execute(sa.insert(choices), found)
            found = []
    if found:
        bind.execute(sa.insert(choices), found)


def downgrade() -> None:
    op.drop_index("ix_split_choices_journey_split", table_name="split_choices")
    op.drop_table("split_choices")
    op.drop_index("ix_provider_events_message_id", table_name="provider_events")
    with op.batch_alter_table("provider_events", schema=None) as batch_op:
        batch_op.drop_column("message_id")

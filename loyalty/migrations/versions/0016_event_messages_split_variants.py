"""provider events name their message; each split's variant per enrollment

`provider_events.message_id` (indexed) names the message a SendGrid event or a
Twilio status callback is about, so a message's delivery events are read by
index; it is filled in for the events already stored (SendGrid's `message_id`
custom argument, Twilio's MessageSid matched to the message's provider id).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 09:00:00.000000

"""

from collections.abc import Sequence

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


def upgrade() -> None:
    op.add_column("provider_events", sa.Column("message_id", _ID, nullable=True))
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in _PG_FILL if postgresql else _SQLITE_FILL:
        op.execute(statement)
    op.create_index("ix_provider_events_message_id", "provider_events", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_provider_events_message_id", table_name="provider_events")
    with op.batch_alter_table("provider_events", schema=None) as batch_op:
        batch_op.drop_column("message_id")

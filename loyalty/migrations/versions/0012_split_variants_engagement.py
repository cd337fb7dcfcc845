"""split variants on enrollments; when each email was last opened and clicked

`enrollments.variant` names the split variant (or `holdout`) a member got, so
reports can count by it; it is filled in from the split notes already kept in
the enrollment's context; messages get an index by enrollment for the report's
sends. `messages.last_opened_at` / `last_clicked_at` keep the
latest open and click SendGrid reported (a click counts as an open), filled in
from the SendGrid events already stored.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 11:00:00.000000

"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("variant", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_enrollments_variant"), ["journey_id", "variant"])
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_opened_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_clicked_at", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_messages_enrollment_id"), ["enrollment_id"])
    _fill_variants()
    _fill_engagement()


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_enrollment_id"))
        batch_op.drop_column("last_clicked_at")
        batch_op.drop_column("last_opened_at")
    with op.batch_alter_table("enrollments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrollments_variant"))
        batch_op.drop_column("variant")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _fill_variants() -> None:
    bind = op.get_bind()
    enrollments = sa.table(
        "enrollments", sa.column("id"), sa.column("context"), sa.column("variant")
    )
    query = sa.select(enrollments.c.id, enrollments.c.context).where(
        sa.cast(enrollments.c.context, sa.Text).like('%"variant"%')
    )
    found: list[dict[str, Any]] = []
    for row in bind.execute(query):
        notes = (_json(row.context) or {}).get("notes") or {}
        variant = next(
            (n["variant"] for n in notes.values() if isinstance(n, dict) and "variant" in n),
            None,
        )
        if isinstance(variant, str):
            found.append({"row_id": row.id, "variant": variant[:64]})
    update = (
        sa.update(enrollments)
        .where(enrollments.c.id == sa.bindparam("row_id"))
        .values(variant=sa.bindparam("variant"))
    )
    for start in range(0, len(found), _BATCH):
        bind.execute(update, found[start : start + _BATCH])


def _fill_engagement() -> None:
    bind = op.get_bind()
    events = sa.table(
        "provider_events",
        sa.column("provider"),
        sa.column("kind"),
        sa.column("payload"),
        sa.column("received_at"),
    )
    query = sa.select(events.c.kind, events.c.payload, events.c.received_at).where(
        events.c.provider == "sendgrid", events.c.kind.in_(("open", "click"))
    )
    opened: dict[int, datetime] = {}
    clicked: dict[int, datetime] = {}
    for row in bind.execute(query):
        payload = _json(row.payload) or {}
        message_id = str(payload.get("message_id") or "")
        if not message_id.isdigit():
            continue
        at: datetime | None
        try:
            at = datetime.fromtimestamp(float(payload["timestamp"]), UTC).replace(tzinfo=None)
        except (KeyError, TypeError, ValueError, OverflowError, OSError):
            at = row.received_at if isinstance(row.received_at, datetime) else None
        if at is None:
            continue
        key = int(message_id)
        opened[key] = max(opened.get(key, at), at)
        if row.kind == "click":
            clicked[key] = max(clicked.get(key, at), at)
    messages = sa.table(
        "messages", sa.column("id"), sa.column("last_opened_at"), sa.column("last_clicked_at")
    )
    rows = [
        {"row_id": key, "opened": at, "clicked": clicked.get(key)} for key, at in opened.items()
    ]
    update = (
        sa.update(messages)
        .where(messages.c.id == sa.bindparam("row_id"))
        .values(last_opened_at=sa.bindparam("opened"), last_clicked_at=sa.bindparam("clicked"))
    )
    for start in range(0, len(rows), _BATCH):
        bind.execute(update, rows[start : start + _BATCH])

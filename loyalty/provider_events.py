"""Provider webhook events, each kept once by the provider's event id (DESIGN §6.6)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from loyalty.db import insert_ignore, insert_ignore_rows
from loyalty.models import ProviderEvent

__all__ = [
    "BatchOutcome",
    "Delivery",
    "keep_provider_events",
    "mark_applied",
    "provider_event_id",
    "store_provider_event",
]

#: The longest provider event id kept as it is; longer ones are stored as a digest.
EVENT_ID_MAX = 255


@dataclass
class BatchOutcome:
    """What became of one webhook delivery's events."""

    applied: int = 0
    duplicates: int = 0
    ignored: int = 0


def store_provider_event(
    session: Session,
    provider: str,
    event_id: str,
    kind: str,
    payload: Mapping[str, Any],
    now: datetime,
    applied: bool,
    message_id: int | None = None,
) -> bool:
    """Insert the provider event (about message `message_id`, when it names one of ours);
    False when it was seen before."""
    row = {
        "provider": provider,
        "provider_event_id": event_id[:EVENT_ID_MAX],
        "kind": kind[:64],
        "payload": dict(payload),
        "received_at": now,
        "applied_at": now if applied else None,
        "message_id": message_id,
    }
    return insert_ignore(session, ProviderEvent, [row], ["provider", "provider_event_id"]) > 0


@dataclass(frozen=True)
class Delivery:
    """One verified webhook delivery to keep: who sent it, its id, its topic and its body."""

    provider: str
    event_id: str
    kind: str
    payload: Mapping[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.provider, self.event_id[:EVENT_ID_MAX]


def keep_provider_events(
    session: Session, deliveries: Sequence[Delivery], now: datetime
) -> list[int | None]:
    """Insert unapplied provider events in one statement: per delivery its new row id, or
    None when it was seen before (in an earlier statement or earlier in `deliveries`)."""
    first: dict[tuple[str, str], Delivery] = {}
    for delivery in deliveries:
        first.setdefault(delivery.key, delivery)
    if not first:
        return []
    rows = [
        {
            "provider": provider,
            "provider_event_id": event_id,
            "kind": delivery.kind[:64],
            "payload": dict(delivery.payload),
            "received_at": now,
            "applied_at": None,
        }
        for (provider, event_id), delivery in first.items()
    ]
    returned = insert_ignore_rows(
        session,
        ProviderEvent,
        rows,
        ["provider", "provider_event_id"],
        ProviderEvent.id,
        ProviderEvent.provider,
        ProviderEvent.provider_event_id,
    )
    kept = {(row.provider, row.provider_event_id): int(row.id) for row in returned}
    ids: list[int | None] = []
    for delivery in deliveries:
        # Only the first of a repeated key in this batch is the new row.
        ids.append(kept.pop(delivery.key, None))
    return ids


def mark_applied(session: Session, provider: str, event_id: str, now: datetime) -> None:
    """Record that a stored provider event has now taken effect."""
    session.execute(
        update(ProviderEvent)
        .where(
            ProviderEvent.provider == provider,
            ProviderEvent.provider_event_id == event_id[:EVENT_ID_MAX],
        )
        .values(applied_at=now)
    )


def provider_event_id(value: object, event: Mapping[str, Any]) -> str:
    """The provider's event id, or a digest of the event when it has none (or a huge one)."""
    text = "" if value is None else str(value)
    if text and len(text) <= EVENT_ID_MAX and text.strip(":"):
        return text
    canonical = json.dumps(event, sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"sha256:{digest}"

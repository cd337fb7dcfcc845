"""HubSpot change notifications: kept once each; CRM sync applies the edits on its next pull."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from loyalty.provider_events import BatchOutcome, provider_event_id, store_provider_event

__all__ = ["store_hubspot_events"]


def store_hubspot_events(
    session: Session, events: Sequence[Mapping[str, Any]], *, now: datetime
) -> BatchOutcome:
    """Keep CRM change notifications once each; CRM sync applies them later."""
    outcome = BatchOutcome()
    for event in events:
        # HubSpot does not promise that eventId alone is unique; retries repeat all of these.
        parts = (event.get(k) for k in ("portalId", "subscriptionId", "eventId", "objectId"))
        key = ":".join("" if p is None else str(p) for p in parts)
        kind = str(event.get("subscriptionType") or "unknown")[:64]
        if store_provider_event(
            session, "hubspot", provider_event_id(key, event), kind, event, now, applied=False
        ):
            outcome.ignored += 1
        else:
            outcome.duplicates += 1
    return outcome

"""What a provider made of one send request, as the SendGrid and Twilio senders report it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum

from loyalty.metrics import record_provider_request

__all__ = ["Outcome", "OutcomeKind", "measured", "retry_after_seconds"]


class OutcomeKind(StrEnum):
    """Every kind of provider outcome; `channels.claims` turns each into a message state."""

    #: Accepted: the message is sent.
    SENT = "sent"
    #: Not accepted, worth trying again later (429, 5xx, a connection that never opened).
    RETRY = "retry"
    #: The request left and no answer came back: possibly sent, never resent blindly.
    UNKNOWN = "unknown"
    #: Refused for good (bad request, invalid number): the message fails.
    FAILED = "failed"
    #: Twilio: the recipient replied STOP (error 21610); the message fails and the
    #: member's SMS consent is withdrawn.
    OPTED_OUT = "opted_out"


@dataclass(frozen=True)
class Outcome:
    """What happened to a request: one of the OutcomeKind kinds and its details."""

    kind: OutcomeKind
    provider_id: str | None = None
    #: Seconds the provider asked us to wait (Retry-After), when it said.
    retry_after: float | None = None
    error: str | None = None
    #: The provider refused for rate (429): everyone sharing its window should wait.
    throttled: bool = False
    #: The HTTP status the provider answered with; None when no answer came.
    status: int | None = None


def measured(provider: str, request: Callable[[], Outcome]) -> Outcome:
    """Run one provider request, counting its outcome, status and duration."""
    started = time.perf_counter()
    outcome = request()
    record_provider_request(provider, outcome.kind, outcome.status, time.perf_counter() - started)
    return outcome


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """A Retry-After header in seconds: delay-seconds or an HTTP date (RFC 9110 §10.2.3).

    None when absent or unreadable; never negative.
    """
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)

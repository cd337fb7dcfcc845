"""Journey `http` steps: a signed JSON POST to a named endpoint, once per enrollment and step.

Each request carries

- ``Idempotency-Key: enrollment:<id>:<step>``, the same on every try of the step, so a
  receiver that keeps the first request under a key never acts twice;
- ``X-Loyalty-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
  HMAC-SHA256 of ``"<t>." + raw body`` under the endpoint's secret (receivers
  recompute it on the raw bytes, compare in constant time and refuse an old ``t``);
- the body stored when the step ran, byte for byte the same on every try.

The row in `messages` (channel ``http``) goes through the outbox states like an email:
claimed, "request left" recorded and committed just before the POST, then sent (2xx),
back to pending with a backoff (408, 429, 5xx, a timeout or a refused connection;
Retry-After honoured) until HTTP_MAX_ATTEMPTS, or failed for good (any other 4xx,
its status recorded). A timeout is retried rather than left unknown because the
idempotency key makes the resend safe at the receiver; for the same reason a call
left unknown by a worker that died mid-request goes back to pending
(`automations.deliveries.retry_unknown`), under the same key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import requests
from sqlalchemy import update

from channels.claims import request_left
from channels.outcomes import Outcome, OutcomeKind, measured, retry_after_seconds
from channels.retries import give_up, retry_later
from loyalty.app import App
from loyalty.models import Message
from loyalty.settings import HttpEndpoint
from loyalty.states import MessageState

__all__ = ["SIGNATURE_HEADER", "deliver_call", "sign", "verify"]

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Loyalty-Signature"
#: Statuses worth another try besides 5xx: the receiver timed out, or asked us to slow down.
RETRIABLE_STATUSES = frozenset({408, 429})
#: How much of a refusing receiver's answer is kept with the message.
ERROR_TEXT_LIMIT = 300
#: Signatures older than this are refused by `verify` (receivers should do the same).
SIGNATURE_TOLERANCE = timedelta(minutes=5)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, now: float | None = None) -> bool:
    """Whether `header` signs `body` under `secret` and is recent; what a receiver checks."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    stamp = parts.get("t", "")
    if not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > SIGNATURE_TOLERANCE.total_seconds():
        return False
    expected = sign(secret, body, int(stamp)).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(frozen=True)
class _Claimed:
    endpoint: HttpEndpoint
    key: str
    body: bytes


def deliver_call(app: App, message_id: int) -> str | None:
    """Post one due `http` row; its new state (None: not due, or not this worker's)."""
    claimed = _claim(app, message_id)
    if not isinstance(claimed, _Claimed):
        return claimed
    if app.settings.journey_calls_local:
        return _write_locally(app, message_id, claimed)
    if not request_left(app, [message_id]):
        return None  # the claim lapsed (this worker stalled) and is another's now
    outcome = measured("http", functools.partial(_post, claimed))
    now = app.clock.now()
    with app.database.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None or message.state != MessageState.CLAIMED:
            return message.state if message else None
        if outcome.kind == OutcomeKind.RETRY:
            return retry_later(
                session,
                app.settings,
                [message_id],
                outcome,
                now,
                max_attempts=app.settings.http_max_attempts,
            )
        message.updated_at = now
        if outcome.kind == OutcomeKind.SENT:
            message.state, message.sent_at, message.error = MessageState.SENT, now, None
            message.provider_id = outcome.provider_id
        else:
            message.state, message.error = MessageState.FAILED, outcome.error
    log.info("http.outcome", extra={"message_id": message_id, "outcome": outcome.kind})
    return message.state


def _claim(app: App, message_id: int) -> _Claimed | str | None:
    now = app.clock.now()
    with app.database.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None or message.channel != "http" or message.state != MessageState.PENDING:
            return None
        if message.next_attempt_at is not None and message.next_attempt_at > now:
            return None
        name = str(message.decisions.get("endpoint"))
        endpoint = app.settings.http_endpoints.get(name)
        message.updated_at = now
        if endpoint is None:
            error = (
                f"endpoint `{name}` is not in HTTP_ENDPOINTS; configure it, then replay "
                "the dead letter (loyalty dlq replay)"
            )
            give_up(session, message, error, now)
            return message.state
        message.attempts += 1
        message.state = MessageState.CLAIMED
        message.request_at = None
        return _Claimed(endpoint, message.idempotency_key, message.decisions["body"].encode())


def _post(claimed: _Claimed) -> Outcome:
    secret = claimed.endpoint.secret.get_secret_value()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": claimed.key,
        SIGNATURE_HEADER: sign(secret, claimed.body, int(time.time())),
        "User-Agent": "loyalty-journeys",
    }
    try:
        response = requests.post(
            str(claimed.endpoint.url),
            data=claimed.body,
            headers=headers,
            timeout=claimed.endpoint.timeout_seconds,
            allow_redirects=False,
        )
    except requests.Timeout:
        return Outcome(OutcomeKind.RETRY, error="timeout: no answer in time")
    except requests.RequestException as exc:
        return Outcome(OutcomeKind.RETRY, error=f"connection: {type(exc).__name__}")
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(OutcomeKind.SENT, provider_id=f"http:{status}", status=status)
    error = f"HTTP {status}: {response.text[:ERROR_TEXT_LIMIT].strip()}".rstrip(": ")
    if status in RETRIABLE_STATUSES or status >= 500:
        after = retry_after_seconds(response.headers.get("Retry-After"))
        return Outcome(OutcomeKind.RETRY, retry_after=after, error=error, status=status)
    return Outcome(OutcomeKind.FAILED, error=error, status=status)


def _write_locally(app: App, message_id: int, claimed: _Claimed) -> str:
    """The call as it would go, in the local outbox (`JOURNEY_CALLS_LOCAL`, the simulator)."""
    folder = Path(app.settings.outbox_dir) / "http"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{message_id}.json"
    record = {
        "url": str(claimed.endpoint.url),
        "idempotency_key": claimed.key,
        "body": json.loads(claimed.body),
    }
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    now = app.clock.now()
    with app.database.transaction() as session:
        session.execute(
            update(Message)
            .where(Message.id == message_id, Message.state == MessageState.CLAIMED)
            .values(state=MessageState.SENT, sent_at=now, provider_id=path.name, updated_at=now)
        )
    return MessageState.SENT

"""Twilio SMS: one message a request, paced per sender, with our message id on the callback."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from channels.outcomes import Outcome, OutcomeKind, retry_after_seconds
from loyalty.errors import RetriableError
from loyalty.pacing import Pacer, PacerFactory
from loyalty.settings import Settings

__all__ = ["OutgoingSms", "TwilioSender", "sender_pacer"]

log = logging.getLogger(__name__)

#: Twilio error codes that are final for the message.
OPTED_OUT = 21610
INVALID_NUMBER = {21211, 21214, 21217, 21614, 21612, 21408}


@dataclass(frozen=True)
class OutgoingSms:
    message_id: int
    to: str
    body: str


def sender_pacer(settings: Settings, pacers: PacerFactory, sender: str) -> Pacer:
    """At most TWILIO_MESSAGES_PER_SECOND from one sender, across every worker sharing `pacers`."""
    rate = settings.twilio_messages_per_second
    limit = max(1, round(rate))
    return pacers(f"twilio:{sender}", limit, limit / rate)


class TwilioSender:
    def __init__(self, settings: Settings, pacers: PacerFactory) -> None:
        assert settings.twilio_account_sid and settings.twilio_auth_token
        # A TwilioRestException carries the status and error code but not the headers,
        # where a 429 or 5xx may say how long to wait (Retry-After): a hook keeps them.
        self._last_headers: dict[str, str] = {}
        self._client = Client(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            http_client=TwilioHttpClient(
                timeout=settings.provider_timeout_seconds,
                request_hooks={"response": self._keep_headers},
            ),
        )
        self._client.api.base_url = settings.twilio_base_url.rstrip("/")
        self._service = settings.twilio_messaging_service_sid
        self._from = settings.twilio_from
        self._callback = settings.public_base_url.rstrip("/") + "/webhooks/twilio/status"
        self._pacer = sender_pacer(settings, pacers, self._service or self._from or "default")

    def _keep_headers(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last_headers = {k.lower(): v for k, v in response.headers.items()}

    @contextmanager
    def slot(self) -> Iterator[None]:
        """A place in this sender's rate window, held until the block ends.

        Take it before claiming the message: the wait (or an unreachable Redis,
        a RetriableError) then happens while the message is still pending.
        """
        token = self._pacer.acquire()
        try:
            yield
        finally:
            try:
                self._pacer.release(token)
            except RetriableError:  # the slot frees itself when its in-flight time runs out
                log.warning("twilio.pacer_release_failed")

    def pause(self, seconds: float) -> None:
        """Hold every worker sending from this number for `seconds` (after a 429)."""
        try:
            self._pacer.pause(seconds)
        except RetriableError:  # the retry's own backoff still spaces this message
            log.warning("twilio.pacer_pause_failed")

    def send(self, sms: OutgoingSms) -> Outcome:
        """Wait for a slot, then send (for one-off sends; deliveries take the slot first)."""
        with self.slot():
            return self.send_now(sms)

    def send_now(self, sms: OutgoingSms) -> Outcome:
        """Send one SMS; the caller holds a slot."""
        kwargs: dict[str, str] = {
            "to": sms.to,
            "body": sms.body,
            "status_callback": f"{self._callback}?message_id={sms.message_id}",
        }
        if self._service:
            kwargs["messaging_service_sid"] = self._service
        else:
            kwargs["from_"] = self._from or ""
        self._last_headers = {}
        try:
            created = self._client.messages.create(**kwargs)
        except TwilioRestException as exc:
            return _classify(exc, self._last_headers)
        except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError) as exc:
            return Outcome(OutcomeKind.RETRY, error=f"connection: {type(exc).__name__}")
        except requests.exceptions.ConnectionError as exc:
            if "NewConnectionError" in repr(exc) or "Connection refused" in str(exc):
                return Outcome(OutcomeKind.RETRY, error="connection refused")
            return Outcome(OutcomeKind.UNKNOWN, error=f"no response: {type(exc).__name__}")
        except requests.exceptions.Timeout as exc:
            return Outcome(OutcomeKind.UNKNOWN, error=f"no response: {type(exc).__name__}")
        return Outcome(OutcomeKind.SENT, provider_id=created.sid, status=201)


def _classify(exc: TwilioRestException, headers: dict[str, str]) -> Outcome:
    code = exc.code or 0
    status = exc.status
    if code == OPTED_OUT:
        return Outcome(OutcomeKind.OPTED_OUT, error=f"{code}: recipient opted out", status=status)
    if code in INVALID_NUMBER:
        return Outcome(OutcomeKind.FAILED, error=f"{code}: invalid number", status=status)
    if exc.status == 429 or code == 20429 or exc.status >= 500:
        return Outcome(
            OutcomeKind.RETRY,
            retry_after=retry_after_seconds(headers.get("retry-after")),
            error=f"HTTP {exc.status} ({code})",
            throttled=exc.status == 429 or code == 20429,
            status=status,
        )
    return Outcome(OutcomeKind.FAILED, error=f"{code}: {exc.msg}", status=status)

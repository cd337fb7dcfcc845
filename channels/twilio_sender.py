"""Twilio SMS: one message a request, paced per sender, with our message id on the callback."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from channels.sendgrid_sender import Outcome
from loyalty.settings import Settings

__all__ = ["OutgoingSms", "Pacer", "TwilioSender"]

#: Twilio error codes that are final for the message.
OPTED_OUT = 21610
INVALID_NUMBER = {21211, 21214, 21217, 21614, 21612, 21408}


@dataclass(frozen=True)
class OutgoingSms:
    message_id: int
    to: str
    body: str


class Pacer:
    """Spaces sends from one sender so that they leave at most `rate` a second."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(sender: str, rate: float) -> Pacer:
    with _pacers_lock:
        if sender not in _pacers:
            _pacers[sender] = Pacer(rate)
        return _pacers[sender]


class TwilioSender:
    def __init__(self, settings: Settings) -> None:
        assert settings.twilio_account_sid and settings.twilio_auth_token
        self._client = Client(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            http_client=TwilioHttpClient(timeout=settings.provider_timeout_seconds),
        )
        self._client.api.base_url = settings.twilio_base_url.rstrip("/")
        self._service = settings.twilio_messaging_service_sid
        self._from = settings.twilio_from
        self._callback = settings.public_base_url.rstrip("/") + "/webhooks/twilio/status"
        sender = self._service or self._from or "default"
        self._pacer = pacer_for(sender, settings.twilio_messages_per_second)

    def send(self, sms: OutgoingSms) -> Outcome:
        self._pacer.wait()
        kwargs: dict[str, str] = {
            "to": sms.to,
            "body": sms.body,
            "status_callback": f"{self._callback}?message_id={sms.message_id}",
        }
        if self._service:
            kwargs["messaging_service_sid"] = self._service
        else:
            kwargs["from_"] = self._from or ""
        try:
            created = self._client.messages.create(**kwargs)
        except TwilioRestException as exc:
            return _classify(exc)
        except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError) as exc:
            return Outcome("retry", error=f"connection: {type(exc).__name__}")
        except requests.exceptions.ConnectionError as exc:
            if "NewConnectionError" in repr(exc) or "Connection refused" in str(exc):
                return Outcome("retry", error="connection refused")
            return Outcome("unknown", error=f"no response: {type(exc).__name__}")
        except requests.exceptions.Timeout as exc:
            return Outcome("unknown", error=f"no response: {type(exc).__name__}")
        return Outcome("sent", provider_id=created.sid)


def _classify(exc: TwilioRestException) -> Outcome:
    code = exc.code or 0
    if code == OPTED_OUT:
        return Outcome("opted_out", error=f"{code}: recipient opted out")
    if code in INVALID_NUMBER:
        return Outcome("failed", error=f"{code}: invalid number")
    if exc.status == 429 or code == 20429 or exc.status >= 500:
        return Outcome("retry", retry_after=1.0, error=f"HTTP {exc.status} ({code})")
    return Outcome("failed", error=f"{code}: {exc.msg}")

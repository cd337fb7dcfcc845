"""SendGrid v3 emulator: mail send and a signed Event Webhook poster."""

from __future__ import annotations

import base64
import json
import random
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.dispatch import Delivery, Dispatcher
from sandbox.emulator import ADMIN_PREFIX, Emulator
from sandbox.faults import FaultConfig
from sandbox.sendgrid_mail import recipients, validate_mail

__all__ = ["SendGridSandbox", "SentMail"]

DEFAULT_API_KEY = "SG.sandbox.key"
#: Mail send refuses bodies above 30 MB (attachments included).
MAX_BODY_BYTES = 30 * 1024 * 1024
#: Events a plain recipient produces.
DEFAULT_OUTCOME = ("processed", "delivered")
#: A tag in the local part (`ann+click@example.com`) picks the outcome, for demos and tests.
TAGGED_OUTCOMES: dict[str, tuple[str, ...]] = {
    "open": ("processed", "delivered", "open"),
    "click": ("processed", "delivered", "open", "click"),
    "bounce": ("processed", "bounce"),
    "blocked": ("processed", "bounce"),
    "dropped": ("processed", "dropped"),
    "deferred": ("processed", "deferred", "delivered"),
    "spam": ("processed", "delivered", "open", "spamreport"),
    "unsubscribe": ("processed", "delivered", "open", "unsubscribe"),
    "groupunsub": ("processed", "delivered", "open", "group_unsubscribe"),
    "resubscribe": ("processed", "delivered", "group_unsubscribe", "group_resubscribe"),
}
_EXTRA: dict[str, dict[str, Any]] = {
    "delivered": {"response": "250 OK", "ip": "149.72.0.1", "tls": 1},
    "deferred": {"response": "400 try again later", "attempt": "1"},
    "dropped": {"reason": "Bounced Address", "status": "5.0.0"},
    "bounce": {
        "type": "bounce",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "status": "5.1.1",
        "bounce_classification": "Invalid Address",
    },
    "open": {"useragent": "Mozilla/5.0", "ip": "203.0.113.7", "sg_machine_open": False},
    "click": {
        "useragent": "Mozilla/5.0",
        "ip": "203.0.113.7",
        "url": "https://example.com/",
        "url_offset": {"index": 0, "type": "html"},
    },
    "group_unsubscribe": {"useragent": "Mozilla/5.0", "ip": "203.0.113.7"},
    "group_resubscribe": {"useragent": "Mozilla/5.0", "ip": "203.0.113.7"},
}


@dataclass(frozen=True)
class SentMail:
    """One accepted /v3/mail/send request."""

    message_id: str
    body: dict[str, Any]
    sandbox_mode: bool


class SendGridSandbox(Emulator):
    """SendGrid mail send with real validation and a signed Event Webhook."""

    name = "sendgrid"
    settings = ("api_keys", "webhook_url", "event_delay_s", "duplicate_rate", "outcomes")

    def __init__(
        self,
        *,
        api_keys: tuple[str, ...] = (DEFAULT_API_KEY,),
        webhook_url: str | None = None,
        event_delay_s: float = 0.05,
        duplicate_rate: float = 0.05,
        outcomes: dict[str, tuple[str, ...]] | None = None,
        seed: int | None = None,
        faults: FaultConfig | None = None,
        port: int = 0,
    ) -> None:
        self.api_keys = set(api_keys)
        self.webhook_url = webhook_url
        self.event_delay_s = event_delay_s
        self.duplicate_rate = duplicate_rate
        self.outcomes = dict(outcomes or {})
        self.seed = seed
        self._private_key = ec.generate_private_key(ec.SECP256R1())
        self.dispatcher = Dispatcher("sandbox-sendgrid-events")
        self.sent: list[SentMail] = []
        super().__init__(faults=faults, port=port)

    @property
    def api_key(self) -> str:
        return next(iter(sorted(self.api_keys)))

    @property
    def public_key(self) -> str:
        """The verification key as SendGrid shows it (base64 DER), for EventWebhook(...)."""
        der = self._private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    @property
    def private_key_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def reset_state(self) -> None:
        self._random = random.Random(self.seed)
        self.sent = []
        self.dispatcher.clear()

    def close(self) -> None:
        self.dispatcher.close()

    # -- Python accessors -------------------------------------------------------------

    def webhook_deliveries(self) -> list[Delivery]:
        return self.dispatcher.deliveries()

    def posted_events(self) -> list[dict[str, Any]]:
        """Every event posted to the webhook so far, duplicates included."""
        return [e for d in self.webhook_deliveries() for e in json.loads(d.body)]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self.dispatcher.wait_idle(timeout)

    def emit_events(self, events: list[dict[str, Any]]) -> None:
        """Post arbitrary events (defaults filled in) as one signed batch."""
        now = int(time.time())
        batch = [
            {"timestamp": now, "sg_event_id": _event_id(), "event": "processed", **e}
            for e in events
        ]
        self.dispatcher.schedule(0, lambda: self._post(batch))

    def sign(self, body: bytes, timestamp: str) -> str:
        signature = self._private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()

    # -- provider shapes --------------------------------------------------------------

    def error_response(self, status: int) -> Response:
        return _errors([{"field": None, "message": "internal error", "help": None}], status)

    def rate_limited_response(self, retry_after_s: float) -> Response:
        response = _errors([{"field": None, "message": "too many requests"}], 429)
        limit = self.faults.config.rate_limit or 0
        response.headers["X-RateLimit-Limit"] = str(limit)
        response.headers["X-RateLimit-Remaining"] = "0"
        response.headers["X-RateLimit-Reset"] = str(int(time.time() + retry_after_s) + 1)
        return response

    def provider_routes(self) -> list[BaseRoute]:
        return [Route("/v3/mail/send", self.mail_send, methods=["POST"])]

    def extra_admin_routes(self) -> list[BaseRoute]:
        return [
            Route(f"{ADMIN_PREFIX}/events", self._admin_events, methods=["GET", "POST"]),
            Route(f"{ADMIN_PREFIX}/webhook", self._admin_webhook, methods=["GET", "PUT"]),
        ]

    async def mail_send(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.api_keys:
            message = "The provided authorization grant is invalid, expired, or revoked"
            return _errors([{"field": None, "message": message, "help": None}], 401)
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            message = "The JSON payload exceeds the maximum size of 30 MB."
            return _errors([{"field": None, "message": message, "help": None}], 413)
        try:
            body = json.loads(raw)
        except ValueError:
            return _errors([{"field": None, "message": "Bad Request", "help": None}], 400)
        errors = validate_mail(body)
        if errors:
            return _errors(errors, 400)
        message_id = secrets.token_urlsafe(16)[:22]
        sandbox_mode = bool(
            ((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable")
        )
        with self.lock:
            self.sent.append(SentMail(message_id, body, sandbox_mode))
        if sandbox_mode:
            return Response(status_code=200)
        if self.webhook_url:
            batch = self._events_for(message_id, body)
            self.dispatcher.schedule(self.event_delay_s, lambda: self._post(batch))
            dups = [e for e in batch if self._random.random() < self.duplicate_rate]
            if dups:
                self.dispatcher.schedule(self.event_delay_s * 2, lambda: self._post(dups))
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    def _events_for(self, message_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        now = int(time.time())
        categories = body.get("categories")
        asm_group = (body.get("asm") or {}).get("group_id")
        events = []
        for i, p in enumerate(body["personalizations"]):
            args = {**(body.get("custom_args") or {}), **(p.get("custom_args") or {})}
            for j, email in enumerate(recipients(p)):
                sg_message_id = f"{message_id}.filterdrecv-sandbox-{i}-{j}-0"
                for name in self._outcome(email):
                    event: dict[str, Any] = {
                        **args,
                        "email": email,
                        "timestamp": now,
                        "event": name,
                        "sg_event_id": _event_id(),
                        "sg_message_id": sg_message_id,
                        "smtp-id": f"<{message_id}@ismtpd-sandbox>",
                        **_EXTRA.get(name, {}),
                    }
                    if categories:
                        event["category"] = categories[0] if len(categories) == 1 else categories
                    if asm_group is not None:
                        event["asm_group_id"] = asm_group
                    events.append(event)
        return events

    def _outcome(self, email: str) -> tuple[str, ...]:
        if email.lower() in self.outcomes:
            return self.outcomes[email.lower()]
        local = email.split("@", 1)[0]
        tag = local.split("+", 1)[1].lower() if "+" in local else ""
        return TAGGED_OUTCOMES.get(tag, DEFAULT_OUTCOME)

    def _post(self, events: list[dict[str, Any]]) -> None:
        url = self.webhook_url
        if not url or not events:
            return
        body = json.dumps(events).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            "X-Twilio-Email-Event-Webhook-Signature": self.sign(body, timestamp),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }
        self.dispatcher.post(url, body, headers)

    async def _admin_events(self, request: Request) -> Response:
        if request.method == "POST":
            self.emit_events(await request.json())
            return Response(status_code=202)
        return JSONResponse(self.posted_events())

    async def _admin_webhook(self, request: Request) -> Response:
        if request.method == "PUT":
            self.webhook_url = (await request.json()).get("url")
        return JSONResponse({"url": self.webhook_url, "public_key": self.public_key})


def _errors(errors: list[dict[str, Any]], status: int) -> Response:
    return JSONResponse({"errors": errors}, status_code=status)


def _event_id() -> str:
    return secrets.token_urlsafe(16)[:22]

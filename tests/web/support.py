"""Signed requests made with the providers' own helpers, and rows to assert on."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hubspot.utils.signature import Signature
from sqlalchemy import select
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from loyalty.app import App
from loyalty.models import Consent, Member, Message, ProviderEvent, Suppression

PUBLIC_BASE_URL = "https://loyalty.example.com"
TWILIO_AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
HUBSPOT_CLIENT_SECRET = "hubspot-client-secret-0000"

_numbers = itertools.count(1)


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, at: datetime) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def post_sendgrid(
    client: TestClient, key: ec.EllipticCurvePrivateKey, events: Any, at: datetime
) -> Any:
    body = json.dumps(events).encode()
    return client.post("/webhooks/sendgrid", content=body, headers=sendgrid_headers(key, body, at))


def sendgrid_event(message: Message | None, event: str, **fields: Any) -> dict[str, Any]:
    """One Event Webhook event as SendGrid posts it, our message id in the custom args."""
    number = next(_numbers)
    values: dict[str, Any] = {
        "email": "Ada@Example.com",
        "timestamp": 1773144000 + number,
        "event": event,
        "sg_event_id": f"sg-event-{number}",
        "sg_message_id": f"x-message-{number}.filterdrecv-0-0",
        "smtp-id": f"<x-message-{number}@ismtpd>",
    }
    if message is not None:
        values["message_id"] = str(message.id)
    values.update(fields)
    return values


def twilio_signature(path: str, params: dict[str, str], token: str = TWILIO_AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, params))


def post_twilio(
    client: TestClient, path: str, params: dict[str, str], signature: str | None = None
) -> Any:
    headers = {"X-Twilio-Signature": signature or twilio_signature(path, params)}
    return client.post(path, data=params, headers=headers)


def status_params(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC" + "5a" * 16,
        "From": "+15005550006",
        "To": "+48600100200",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def inbound_params(body: str, phone: str = "+48600100200", **extra: str) -> dict[str, str]:
    sid = f"SM{next(_numbers):032x}"
    return {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": "AC" + "5a" * 16,
        "From": phone,
        "To": "+15005550006",
        "Body": body,
        "NumMedia": "0",
        **extra,
    }


def hubspot_headers(
    body: bytes, at: datetime, secret: str = HUBSPOT_CLIENT_SECRET, path: str = "/webhooks/hubspot"
) -> dict[str, str]:
    timestamp = str(int(at.timestamp() * 1000))
    signature = Signature.get_signature(
        secret, body.decode(), "v3", PUBLIC_BASE_URL + path, "POST", timestamp
    )
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature,
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def make_message(app: App, member: Member, **fields: Any) -> Message:
    now = app.clock.now()
    values: dict[str, Any] = {
        "idempotency_key": f"test:{next(_numbers)}",
        "member_id": member.id,
        "channel": "email",
        "purpose": "marketing",
        "state": "sent",
        "created_at": now,
        "updated_at": now,
        "sent_at": now,
    }
    values.update(fields)
    with app.database.transaction() as session:
        message = Message(**values)
        session.add(message)
    return message


def load(app: App, model: type[Any], id_: int) -> Any:
    with app.database.sessions() as session:
        row = session.get(model, id_)
        assert row is not None
        return row


def suppressions(app: App) -> list[tuple[str, str, str]]:
    with app.database.sessions() as session:
        rows = session.scalars(select(Suppression).order_by(Suppression.id))
        return [(s.channel, s.address, s.reason) for s in rows]


def consents(app: App) -> list[tuple[int, str, bool, str]]:
    with app.database.sessions() as session:
        rows = session.scalars(select(Consent).order_by(Consent.id))
        return [(c.member_id, c.channel, c.granted, c.source) for c in rows]


def provider_events(app: App, provider: str) -> list[ProviderEvent]:
    with app.database.sessions() as session:
        query = select(ProviderEvent).where(ProviderEvent.provider == provider)
        return list(session.scalars(query.order_by(ProviderEvent.id)))


def snapshot(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a webhook may touch, for "nothing changed" checks."""
    with app.database.sessions() as session:
        return {
            "members": [
                (m.id, m.email_consent, m.sms_consent, m.updated_at)
                for m in session.scalars(select(Member).order_by(Member.id))
            ],
            "messages": [
                (m.id, m.state, m.provider_id, m.provider_status, m.error, m.updated_at)
                for m in session.scalars(select(Message).order_by(Message.id))
            ],
            "suppressions": [
                (s.channel, s.address, s.reason)
                for s in session.scalars(select(Suppression).order_by(Suppression.id))
            ],
            "consents": [
                (c.member_id, c.channel, c.granted, c.source, c.at)
                for c in session.scalars(select(Consent).order_by(Consent.id))
            ],
            "provider_events": [
                (e.provider, e.provider_event_id)
                for e in session.scalars(select(ProviderEvent).order_by(ProviderEvent.id))
            ],
        }

"""Webhook signature checks, through the provider's official helper where it has one (DESIGN §13).

Each returns False for anything it cannot verify: a missing header, a bad
encoding, an unconfigured secret or a timestamp outside the allowed window.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from hubspot.utils.signature import Signature
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator, get_signature_algorithm

__all__ = [
    "HUBSPOT_MAX_AGE",
    "SENDGRID_MAX_AGE",
    "hubspot_signature_ok",
    "sendgrid_signature_ok",
    "shopify_signature_ok",
    "twilio_signature_ok",
    "woocommerce_signature_ok",
]

log = logging.getLogger(__name__)

#: SendGrid documents no window; replays inside it are harmless (events dedupe on sg_event_id).
SENDGRID_MAX_AGE = timedelta(minutes=10)
#: HubSpot's own rule for v3 signatures.
HUBSPOT_MAX_AGE = timedelta(seconds=Signature.MAX_ALLOWED_TIMESTAMP)


def sendgrid_signature_ok(
    public_key: str | None,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: datetime,
) -> bool:
    """ECDSA over timestamp + raw body, with the timestamp (epoch seconds) near `now`."""
    if not public_key or not signature or not timestamp:
        return False
    if not _fresh(timestamp, 1, now, SENDGRID_MAX_AGE):
        return False
    webhook = _sendgrid_verifier(public_key)
    if webhook is None:
        return False
    try:
        payload = body.decode("utf-8")
        return bool(webhook.verify_signature(payload, signature, timestamp))
    except (InvalidSignature, UnicodeDecodeError, binascii.Error, ValueError, TypeError):
        return False


def twilio_signature_ok(
    auth_token: str | None,
    url: str,
    params: Any,
    signature: str | None,
    signature_settings: str | None = None,
) -> bool:
    """HMAC of the public URL Twilio called plus the sorted form parameters.

    HMAC-SHA1 by default; HMAC-SHA256 when Twilio names it in its
    `X-Twilio-Webhooks-Signature-Settings` header. An algorithm the client does
    not know fails.
    """
    if not auth_token or not signature:
        return False
    algorithm = get_signature_algorithm(signature_settings)
    return bool(RequestValidator(auth_token).validate(url, params, signature, algorithm))


def hubspot_signature_ok(
    client_secret: str | None,
    *,
    method: str,
    url: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now: datetime,
) -> bool:
    """v3: base64 HMAC-SHA256 of method + URL + body + timestamp (epoch ms), at most 5 min old."""
    if not client_secret or not signature or not timestamp:
        return False
    if not _fresh(timestamp, 1000, now, HUBSPOT_MAX_AGE):
        return False
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    # Signature.is_valid reads the wall clock; the window is checked above against ours.
    expected = Signature.get_signature(client_secret, text, "v3", url, method.upper(), timestamp)
    return hmac.compare_digest(expected.encode(), signature.encode())


def shopify_signature_ok(secret: str | None, body: bytes, signature: str | None) -> bool:
    """`X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body with the app's client secret."""
    return _base64_hmac_sha256_ok(secret, body, signature)


def woocommerce_signature_ok(secret: str | None, body: bytes, signature: str | None) -> bool:
    """`X-WC-Webhook-Signature`: base64 HMAC-SHA256 of the raw body with the webhook's secret."""
    return _base64_hmac_sha256_ok(secret, body, signature)


def _base64_hmac_sha256_ok(secret: str | None, body: bytes, signature: str | None) -> bool:
    # Neither shop publishes a Python helper for this; both sign the same way, byte for byte.
    if not secret or not signature:
        return False
    expected = base64.b64encode(hmac.digest(secret.encode(), body, "sha256"))
    try:
        given = signature.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, given)


def _fresh(timestamp: str, per_second: int, now: datetime, window: timedelta) -> bool:
    text = timestamp.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 16:
        return False
    at = datetime.fromtimestamp(int(text) / per_second, UTC)
    return abs(now - at) <= window


@functools.lru_cache(maxsize=4)
def _sendgrid_verifier(public_key: str) -> EventWebhook | None:
    try:
        return EventWebhook(public_key)
    except (ValueError, TypeError):
        log.error("sendgrid.webhook_key_invalid")
        return None

"""WooCommerce REST authentication: OAuth 1.0a one-legged over HTTP, Basic over HTTPS.

The signature is rebuilt the way the official `woocommerce` client builds it (and the
WooCommerce plugin checks it): sorted, doubly-encoded query parameters, HMAC-SHA256 (or
SHA1) keyed with `consumer_secret&`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = ["AuthOutcome", "Authenticator", "oauth_signature"]

#: A signed request must be this close (seconds) to the server's clock.
TIMESTAMP_WINDOW_S = 15 * 60
OAUTH_PARAMS = (
    "oauth_consumer_key",
    "oauth_timestamp",
    "oauth_nonce",
    "oauth_signature",
    "oauth_signature_method",
)


@dataclass(frozen=True)
class AuthOutcome:
    """`key` when authenticated; an `error` (code, message) when the attempt failed loudly.

    Neither means an anonymous request, which the endpoints refuse with their own 401.
    """

    key: str | None = None
    error: tuple[str, str] | None = None


def oauth_signature(
    method: str, base_url: str, params: dict[str, str], secret: str, algorithm: str = "sha256"
) -> str:
    """The base64 signature over METHOD&url&sorted-params, as the woocommerce client makes it."""
    ordered: OrderedDict[str, str] = OrderedDict()
    for base in sorted({k.split("[")[0] for k in params}):
        for key, value in params.items():
            if key == base or key.startswith(base + "["):
                ordered[key] = value
    pairs = [
        f"{_normalize(key)}%3D{_normalize(value)}"
        for key, value in ordered.items()
        if key != "oauth_signature"
    ]
    string_to_sign = f"{method.upper()}&{quote(base_url, '')}&{'%26'.join(pairs)}"
    digest = getattr(hashlib, algorithm)
    signature = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), digest).digest()
    return base64.b64encode(signature).decode()


def _normalize(value: str) -> str:
    return quote(unquote(value)).replace("%", "%25")


class Authenticator:
    """Checks one request's credentials against the shop's API keys."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self._nonces: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def check(
        self,
        *,
        secure: bool,
        method: str,
        base_url: str,
        query: dict[str, str],
        authorization: str | None,
    ) -> AuthOutcome:
        """Basic (or consumer_key/consumer_secret in the query) when `secure`, else OAuth."""
        if secure:
            basic = self._basic(authorization, query)
            if basic is not None:
                return basic
        return self._oauth(method, base_url, query)

    def _basic(self, authorization: str | None, query: dict[str, str]) -> AuthOutcome | None:
        key = secret = None
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            key, _, secret = decoded.partition(":")
        elif "consumer_key" in query:
            key, secret = query["consumer_key"], query.get("consumer_secret", "")
        if key is None or key not in self.keys:
            return None  # WooCommerce carries on unauthenticated
        if not hmac.compare_digest(self.keys[key].encode(), (secret or "").encode()):
            return AuthOutcome(error=("woocommerce_rest_authentication_error", _BAD_SECRET))
        return AuthOutcome(key=key)

    def _oauth(self, method: str, base_url: str, query: dict[str, str]) -> AuthOutcome:
        if not query.get("oauth_consumer_key"):
            return AuthOutcome()
        missing = [p for p in OAUTH_PARAMS if not query.get(p)]
        if missing:
            noun = "parameter" if len(missing) == 1 else "parameters"
            message = f"Missing OAuth {noun} {', '.join(missing)}"
            return AuthOutcome(error=("woocommerce_rest_authentication_missing_parameter", message))
        key = query["oauth_consumer_key"]
        secret = self.keys.get(key)
        if secret is None:
            return AuthOutcome(error=("woocommerce_rest_authentication_error", _BAD_KEY))
        algorithm = {"HMAC-SHA1": "sha1", "HMAC-SHA256": "sha256"}.get(
            query["oauth_signature_method"]
        )
        if algorithm is None:
            message = "Invalid signature - signature method is invalid."
            return AuthOutcome(error=("woocommerce_rest_authentication_error", message))
        expected = oauth_signature(method, base_url, query, secret, algorithm)
        given = query["oauth_signature"].replace(" ", "+")
        if not hmac.compare_digest(expected.encode(), given.encode()):
            message = "Invalid signature - provided signature does not match."
            return AuthOutcome(error=("woocommerce_rest_authentication_error", message))
        timestamp = query["oauth_timestamp"]
        if not timestamp.isdigit() or abs(int(timestamp) - time.time()) > TIMESTAMP_WINDOW_S:
            return AuthOutcome(
                error=("woocommerce_rest_authentication_error", "Invalid timestamp.")
            )
        with self._lock:
            nonce = (key, query["oauth_nonce"])
            if nonce in self._nonces:
                message = "Invalid nonce - nonce has already been used."
                return AuthOutcome(error=("woocommerce_rest_authentication_error", message))
            self._nonces.add(nonce)
        return AuthOutcome(key=key)


_BAD_KEY = "Consumer key is invalid."
_BAD_SECRET = "Consumer secret is invalid."

"""Shopify emulator over TLS: Admin GraphQL code discounts with query cost, signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.dispatch import Delivery, WebhookLog
from sandbox.emulator import Emulator
from sandbox.faults import FaultConfig
from sandbox.server import LOOPBACK
from sandbox.shopify_discounts import DiscountStore
from sandbox.shopify_graphql import AdminQuery, Prepared, prepare
from sandbox.shopify_payloads import (
    customer_payload,
    data_request_payload,
    order_payload,
    redact_payload,
    refund_payload,
    shop_redact_payload,
)
from sandbox.tls import LoopbackTLS

__all__ = ["CostBucket", "ShopifySandbox", "sign_webhook"]

#: Admin API access token of the emulated custom app (Shopify's shpat_ format).
DEFAULT_TOKEN = "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"
#: The app's client secret, which signs webhooks.
DEFAULT_WEBHOOK_SECRET = "shpss_0123456789abcdef0123456789abcdef"
DEFAULT_API_VERSION = "2025-01"
#: Versions served as asked; any other YYYY-MM falls forward to the oldest, as on Shopify.
SUPPORTED_VERSIONS = ("2024-10", "2025-01", "2025-04", "2025-07", "2025-10")
#: A standard shop's leaky bucket: 1000 points, 50 restored per second.
BUCKET_SIZE = 1000.0
RESTORE_RATE = 50.0
SHOP_ID = 548380009
AUTH_ERROR = "[API] Invalid API key or access token (unrecognized login or wrong password)"
THROTTLED_DOCS = "https://shopify.dev/api/usage/rate-limits"
_VERSION = re.compile(r"^(\d{4}-\d{2}|unstable)$")


def sign_webhook(body: bytes, secret: str) -> str:
    """X-Shopify-Hmac-Sha256: base64 of HMAC-SHA256 over the raw body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class CostBucket:
    """Shopify's leaky bucket of query-cost points, restored continuously."""

    def __init__(self, maximum: float, restore_rate: float, available: float | None = None) -> None:
        self.maximum = maximum
        self.restore_rate = restore_rate
        self._available = maximum if available is None else min(available, maximum)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def available(self) -> float:
        with self._lock:
            return self._restore()

    def _restore(self) -> float:
        now = time.monotonic()
        self._available = min(self.maximum, self._available + (now - self._at) * self.restore_rate)
        self._at = now
        return self._available

    def take(self, cost: int) -> bool:
        """Reserve `cost` points; False (nothing taken) when the bucket holds fewer."""
        with self._lock:
            if self._restore() < cost:
                return False
            self._available -= cost
            return True

    def refund(self, points: int) -> None:
        with self._lock:
            self._available = min(self.maximum, self._restore() + points)

    def status(self) -> dict[str, Any]:
        return {
            "maximumAvailable": float(self.maximum),
            "currentlyAvailable": int(self.available()),
            "restoreRate": float(self.restore_rate),
        }


class ShopifySandbox(Emulator):
    """One shop's Admin GraphQL API (code discounts) on https://127.0.0.1, plus webhooks.

    Address it as `shopify.Session(shop_domain, api_version, access_token)` (see
    sandbox/README.md for the two class settings and the CA that ShopifyAPI needs).
    """

    name = "shopify"
    scheme = "https"
    settings = ("currency", "supported_versions", "bucket_size", "restore_rate")

    def __init__(
        self,
        *,
        access_token: str = DEFAULT_TOKEN,
        api_version: str = DEFAULT_API_VERSION,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        bucket_size: float = BUCKET_SIZE,
        restore_rate: float = RESTORE_RATE,
        currency: str = "PLN",
        shop_name: str = "Sandbox Shop",
        supported_versions: tuple[str, ...] = SUPPORTED_VERSIONS,
        tls: LoopbackTLS | None = None,
        faults: FaultConfig | None = None,
        port: int = 0,
    ) -> None:
        self.access_token = access_token
        self.api_version = api_version
        self.webhook_secret = webhook_secret
        self.bucket_size = bucket_size
        self.restore_rate = restore_rate
        self.currency = currency
        self.shop_name = shop_name
        self.shop_id = SHOP_ID
        self.supported_versions = supported_versions
        self.tls = tls or LoopbackTLS()
        self._webhooks = WebhookLog()
        super().__init__(faults=faults, port=port)

    # -- addresses ---------------------------------------------------------------------

    @property
    def shop_domain(self) -> str:
        """What stands in for `acme.myshopify.com`: `127.0.0.1:<port>`."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/admin/api/{self.api_version}/graphql.json"

    @property
    def ca_file(self) -> Path:
        """PEM of the CA that signed the server certificate."""
        return self.tls.ca_file

    def tls_files(self) -> tuple[Path, Path]:
        if not self.tls.cert_file.exists():  # cleaned up by an earlier stop()
            self.tls = LoopbackTLS()
        return self.tls.cert_file, self.tls.key_file

    def close(self) -> None:
        self.tls.cleanup()

    def reset_state(self) -> None:
        self.tokens = {self.access_token}
        self.store = DiscountStore()
        self.bucket = CostBucket(self.bucket_size, self.restore_rate)
        self._webhooks = WebhookLog()

    # -- Python accessors ------------------------------------------------------------------

    def codes(self) -> list[dict[str, Any]]:
        """Every discount code created so far, oldest first."""
        with self.lock:
            return [d.to_dict() for d in self.store.discounts.values()]

    def use_code(self, code: str) -> bool:
        """Count one redemption of `code` (what an order using it does); False if unknown."""
        with self.lock:
            found = self.store.by_code(code)
            if found is None:
                return False
            found.usage_count += 1
            return True

    def set_throttle(
        self,
        *,
        maximum_available: float | None = None,
        restore_rate: float | None = None,
        currently_available: float | None = None,
    ) -> None:
        """Resize or drain the query-cost bucket until the next reset()."""
        with self.lock:
            self.bucket = CostBucket(
                self.bucket.maximum if maximum_available is None else maximum_available,
                self.bucket.restore_rate if restore_rate is None else restore_rate,
                self.bucket.available() if currently_available is None else currently_available,
            )

    def revoke_access(self) -> None:
        """The app is uninstalled: its token now gets 401."""
        with self.lock:
            self.tokens.clear()

    # -- webhooks ----------------------------------------------------------------------------

    def send_webhook(
        self,
        topic: str,
        payload: dict[str, Any],
        url: str,
        *,
        webhook_id: str | None = None,
        event_id: str | None = None,
        secret: str | None = None,
        tamper: bool = False,
        shop_domain: str | None = None,
        api_version: str | None = None,
        triggered_at: datetime | None = None,
        timeout: float = 5.0,
    ) -> httpx.Response:
        """POST one signed delivery; pass the same webhook_id again to send a retry.

        `tamper` signs the body, then changes it in transit, so the signature fails.
        """
        body = json.dumps(payload).encode()
        signature = sign_webhook(body, secret if secret is not None else self.webhook_secret)
        if tamper:
            body = json.dumps({**payload, "tampered": True}).encode()
        webhook_id = webhook_id or str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Shopify-Captain-Hook",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature,
            "X-Shopify-Shop-Domain": shop_domain or self.shop_domain,
            "X-Shopify-API-Version": api_version or self.api_version,
            "X-Shopify-Webhook-Id": webhook_id,
            # One event, many deliveries: a retry keeps the event id of its first try.
            "X-Shopify-Event-Id": event_id or str(uuid.uuid5(uuid.NAMESPACE_URL, webhook_id)),
            "X-Shopify-Triggered-At": (triggered_at or datetime.now(UTC))
            .astimezone(UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
        }
        return self._webhooks.post(url, body, headers, timeout)

    def webhook_deliveries(self) -> list[Delivery]:
        """Every send_webhook() post and how the receiver answered."""
        return self._webhooks.all()

    order_payload = staticmethod(order_payload)
    refund_payload = staticmethod(refund_payload)
    customer_payload = staticmethod(customer_payload)

    def redact_payload(
        self,
        customer_id: int,
        *,
        email: str | None = "anna@example.com",
        phone: str | None = None,
        orders_to_redact: list[int] | None = None,
    ) -> dict[str, Any]:
        """A customers/redact body for this shop."""
        return redact_payload(
            self.shop_id,
            self.shop_domain,
            customer_id,
            email=email,
            phone=phone,
            orders_to_redact=orders_to_redact,
        )

    def data_request_payload(
        self,
        customer_id: int,
        *,
        email: str | None = "anna@example.com",
        phone: str | None = None,
        orders_requested: list[int] | None = None,
        data_request_id: int = 9999,
    ) -> dict[str, Any]:
        """A customers/data_request body for this shop."""
        return data_request_payload(
            self.shop_id,
            self.shop_domain,
            customer_id,
            email=email,
            phone=phone,
            orders_requested=orders_requested,
            data_request_id=data_request_id,
        )

    def shop_redact_payload(self) -> dict[str, Any]:
        """A shop/redact body for this shop."""
        return shop_redact_payload(self.shop_id, self.shop_domain)

    # -- provider shapes -----------------------------------------------------------------------

    def error_response(self, status: int) -> Response:
        request_id = str(uuid.uuid4())
        message = (
            "Internal error. Looks like something went wrong on our end.\n"
            f"Request ID: {request_id} (include this in support requests)."
        )
        error = {
            "message": message,
            "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
        }
        return JSONResponse({"errors": [error]}, status_code=status)

    def rate_limited_response(self, retry_after_s: float) -> Response:
        message = (
            "Exceeded 2 calls per second for api client. "
            "Reduce request rates to resume uninterrupted service."
        )
        return JSONResponse(
            {"errors": message}, status_code=429, headers={"Retry-After": f"{retry_after_s:.1f}"}
        )

    def provider_routes(self) -> list[BaseRoute]:
        return [
            Route("/admin/api/{version}/graphql.json", self.graphql, methods=["POST"]),
        ]

    async def graphql(self, request: Request) -> Response:
        version = request.path_params["version"]
        if not _VERSION.match(version):
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        served = version if version in self.supported_versions else self.supported_versions[0]
        headers = {"X-Shopify-API-Version": served, "X-Request-Id": str(uuid.uuid4())}
        if request.headers.get("x-shopify-access-token") not in self.tokens:
            return JSONResponse({"errors": AUTH_ERROR}, status_code=401, headers=headers)
        parsed = _graphql_request(await request.body(), request.headers.get("content-type", ""))
        if parsed is None:
            body = {"errors": {"query": "Required parameter missing or invalid"}}
            return JSONResponse(body, status_code=400, headers=headers)
        query, variables, operation_name = parsed
        with self.lock:
            return JSONResponse(self._run(query, variables, operation_name), headers=headers)

    def _run(
        self, query: str, variables: dict[str, Any], operation_name: str | None
    ) -> dict[str, Any]:
        prepared = prepare(query, operation_name, variables)
        if not isinstance(prepared, Prepared):
            return {"errors": prepared, "extensions": {"cost": self._cost(0, 0)}}
        requested = prepared.requested_cost
        if requested > self.bucket.maximum:
            return _max_cost_exceeded(requested, int(self.bucket.maximum))
        if not self.bucket.take(requested):
            error = {
                "message": "Throttled",
                "extensions": {"code": "THROTTLED", "documentation": THROTTLED_DOCS},
            }
            return {"errors": [error], "extensions": {"cost": self._cost(requested, None)}}
        shop = {
            "id": f"gid://shopify/Shop/{self.shop_id}",
            "name": self.shop_name,
            "myshopifyDomain": self.shop_domain,
            "currencyCode": self.currency,
        }
        now = datetime.now(UTC)
        result = AdminQuery(self.store, now, self.currency, shop).execute(prepared, variables)
        actual = _actual_cost(prepared, result.data)
        self.bucket.refund(requested - actual)
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [_error(e) for e in result.errors]
        if result.data is not None or not result.errors:
            body["data"] = result.data
        body["extensions"] = {"cost": self._cost(requested, actual)}
        return body

    def _cost(self, requested: int, actual: int | None) -> dict[str, Any]:
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": self.bucket.status(),
        }


def _graphql_request(
    raw: bytes, content_type: str
) -> tuple[str, dict[str, Any], str | None] | None:
    """(query, variables, operationName) from a JSON or application/graphql body."""
    if content_type.startswith("application/graphql"):
        return raw.decode("utf-8", errors="replace"), {}, None
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        return None
    variables = body.get("variables") or {}
    if isinstance(variables, str):
        try:
            variables = json.loads(variables)
        except ValueError:
            return None
    if not isinstance(variables, dict):
        return None
    operation_name = body.get("operationName")
    return body["query"], variables, operation_name if isinstance(operation_name, str) else None


def _actual_cost(prepared: Prepared, data: dict[str, Any] | None) -> int:
    """A top-level field that resolved to null costs one point instead of its estimate."""
    if data is None or prepared.is_mutation:
        return prepared.requested_cost
    return sum(
        cost if data.get(key) is not None else min(cost, 1)
        for key, cost in prepared.field_costs.items()
    )


def _error(error: GraphQLError) -> dict[str, Any]:
    return dict(error.formatted)


def _max_cost_exceeded(cost: int, maximum: int) -> dict[str, Any]:
    message = (
        f"Query cost is {cost}, which exceeds the single query max cost limit ({maximum}).\n\n"
        "See https://shopify.dev/concepts/about-apis/rate-limits for more information on how "
        "the\ncost of a query is calculated.\n\nTo query larger amounts of data with fewer "
        "limits, bulk operations should be used instead.\nSee "
        "https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage "
        "details.\n"
    )
    error = {
        "message": message,
        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": cost, "maxCost": maximum},
    }
    return {"errors": [error]}

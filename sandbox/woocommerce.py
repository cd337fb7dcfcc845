"""WooCommerce emulator: REST v3 coupons behind real OAuth 1.0a / Basic auth, signed webhooks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.dispatch import Delivery, WebhookLog
from sandbox.emulator import Emulator
from sandbox.faults import FaultConfig
from sandbox.tls import LoopbackTLS
from sandbox.woocommerce_auth import Authenticator
from sandbox.woocommerce_coupons import CouponStore, WcError, coupon_json
from sandbox.woocommerce_payloads import billing_address, customer_payload, order_payload

__all__ = ["WooCommerceSandbox", "sign_webhook"]

DEFAULT_CONSUMER_KEY = "ck_5a5d0b0c5a5d0b0c5a5d0b0c5a5d0b0c5a5d0b0c"
DEFAULT_CONSUMER_SECRET = "cs_0123456789abcdef0123456789abcdef01234567"
DEFAULT_WEBHOOK_SECRET = "wc-sandbox-webhook-secret"
API = "/wp-json/wc/v3"
PER_PAGE_MAX = 100
USER_AGENT = "WooCommerce/9.4.2 Hookshot (WordPress/6.7.1)"
#: What a key without the permission hears (WooCommerce words it per method).
_FORBIDDEN = {
    "create": ("woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources."),
    "list": ("woocommerce_rest_cannot_view", "Sorry, you cannot list resources."),
    "view": ("woocommerce_rest_cannot_view", "Sorry, you cannot view this resource."),
    "edit": ("woocommerce_rest_cannot_edit", "Sorry, you are not allowed to edit this resource."),
    "delete": (
        "woocommerce_rest_cannot_delete",
        "Sorry, you are not allowed to delete this resource.",
    ),
}

Handler = Callable[[Request], Awaitable[Response]]


def sign_webhook(body: bytes, secret: str) -> str:
    """X-WC-Webhook-Signature: base64 of HMAC-SHA256 over the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


class WooCommerceSandbox(Emulator):
    """A WooCommerce shop's REST API v3 (coupons) and its webhooks.

    Plain HTTP by default, where the official client signs every request with OAuth 1.0a;
    `https=True` serves TLS with a throwaway CA, where the client uses Basic auth.
    """

    name = "woocommerce"
    settings = ("key_permissions",)

    def __init__(
        self,
        *,
        consumer_key: str = DEFAULT_CONSUMER_KEY,
        consumer_secret: str = DEFAULT_CONSUMER_SECRET,
        webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
        key_permissions: str = "read_write",
        webhook_id: int = 1,
        https: bool = False,
        tls: LoopbackTLS | None = None,
        faults: FaultConfig | None = None,
        port: int = 0,
    ) -> None:
        if key_permissions not in ("read", "write", "read_write"):
            raise ValueError("key_permissions is read, write or read_write")
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.webhook_secret = webhook_secret
        self.key_permissions = key_permissions
        self.webhook_id = webhook_id
        self.scheme = "https" if https else "http"
        self.tls = (tls or LoopbackTLS()) if https else None
        self._webhooks = WebhookLog()
        super().__init__(faults=faults, port=port)

    # -- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The shop's address, as `API(url, …)` and X-WC-Webhook-Source name it."""
        return self.base_url

    @property
    def ca_file(self) -> Path | None:
        """The test CA when serving HTTPS, else None."""
        return self.tls.ca_file if self.tls else None

    def tls_files(self) -> tuple[Path, Path] | None:
        if self.tls is None:
            return None
        if not self.tls.cert_file.exists():  # cleaned up by an earlier stop()
            self.tls = LoopbackTLS()
        return self.tls.cert_file, self.tls.key_file

    def close(self) -> None:
        if self.tls is not None:
            self.tls.cleanup()

    def reset_state(self) -> None:
        self.auth = Authenticator({self.consumer_key: self.consumer_secret})
        self.store = CouponStore()
        self._webhooks = WebhookLog()

    # -- Python accessors ------------------------------------------------------------------

    def coupons(self) -> list[dict[str, Any]]:
        """Every coupon (trashed ones included), oldest first, in the REST shape."""
        with self.lock:
            return [coupon_json(c, self.base_url) for c in self.store.coupons.values()]

    def add_coupon(self, **fields: Any) -> dict[str, Any]:
        """Create a coupon as a shop manager would (same checks as POST /coupons)."""
        with self.lock:
            return coupon_json(self.store.create(fields, datetime.now(UTC)), self.base_url)

    def use_coupon(self, code: str, email: str | None = None) -> bool:
        """Count one use of `code` (what a paid order with it does); False if unknown."""
        with self.lock:
            coupon = self.store.by_code(code)
            if coupon is None:
                return False
            coupon.usage_count += 1
            if email:
                coupon.used_by.append(email)
            return True

    def revoke_keys(self) -> None:
        """The API key is deleted in the shop: its requests now get 401."""
        with self.lock:
            self.auth.keys.clear()

    # -- webhooks ----------------------------------------------------------------------------

    def send_webhook(
        self,
        topic: str,
        payload: dict[str, Any],
        url: str,
        *,
        delivery_id: str | None = None,
        webhook_id: int | None = None,
        secret: str | None = None,
        tamper: bool = False,
        source: str | None = None,
        timeout: float = 5.0,
    ) -> httpx.Response:
        """POST one signed delivery of `topic` (e.g. "order.updated") to `url`.

        `tamper` signs the body, then changes it in transit, so the signature fails.
        """
        resource, _, event = topic.partition(".")
        body = json.dumps(payload).encode()
        signature = sign_webhook(body, secret if secret is not None else self.webhook_secret)
        if tamper:
            body = json.dumps({**payload, "tampered": True}).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-WC-Webhook-Source": source or f"{self.base_url}/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": signature,
            "X-WC-Webhook-ID": str(webhook_id if webhook_id is not None else self.webhook_id),
            "X-WC-Webhook-Delivery-ID": delivery_id or uuid.uuid4().hex,
        }
        return self._webhooks.post(url, body, headers, timeout)

    def ping(
        self, url: str, *, webhook_id: int | None = None, timeout: float = 5.0
    ) -> httpx.Response:
        """What WooCommerce posts when a webhook is saved: `webhook_id=N`, unsigned."""
        body = f"webhook_id={webhook_id if webhook_id is not None else self.webhook_id}".encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT}
        return self._webhooks.post(url, body, headers, timeout)

    def webhook_deliveries(self) -> list[Delivery]:
        """Every send_webhook() and ping() post and how the receiver answered."""
        return self._webhooks.all()

    order_payload = staticmethod(order_payload)
    customer_payload = staticmethod(customer_payload)
    billing_address = staticmethod(billing_address)

    # -- provider shapes -----------------------------------------------------------------------

    def error_response(self, status: int) -> Response:
        message = (
            '<p>There has been a critical error on this website.</p><p><a href="https://'
            'wordpress.org/documentation/article/faq-troubleshooting/">Learn more about '
            "troubleshooting WordPress.</a></p>"
        )
        body = {
            "code": "internal_server_error",
            "message": message,
            "data": {"status": status},
            "additional_errors": [],
        }
        return JSONResponse(body, status_code=status)

    def rate_limited_response(self, retry_after_s: float) -> Response:
        body = {
            "code": "rest_too_many_requests",
            "message": "Too many requests. Please wait and try again.",
            "data": {"status": 429},
        }
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
        return JSONResponse(body, status_code=429, headers=headers)

    def provider_routes(self) -> list[BaseRoute]:
        e = self._endpoint
        return [
            Route("/", self._storefront, methods=["GET"]),
            Route(f"{API}/coupons", e(self.list_coupons, "list"), methods=["GET"]),
            Route(f"{API}/coupons", e(self.create_coupon, "create"), methods=["POST"]),
            Route(f"{API}/coupons/{{coupon_id:int}}", e(self.get_coupon, "view"), methods=["GET"]),
            Route(
                f"{API}/coupons/{{coupon_id:int}}",
                e(self.update_coupon, "edit"),
                methods=["PUT", "PATCH", "POST"],
            ),
            Route(
                f"{API}/coupons/{{coupon_id:int}}",
                e(self.delete_coupon, "delete"),
                methods=["DELETE"],
            ),
            Route("/wp-json/{path:path}", self._no_route, methods=["GET", "POST", "PUT", "DELETE"]),
        ]

    def _endpoint(self, handler: Handler, action: str) -> Handler:
        """Authentication, the key's read/write permission, and WcError rendering."""

        async def endpoint(request: Request) -> Response:
            query = dict(parse_qsl(request.url.query, keep_blank_values=True))
            host = request.headers.get("host", f"127.0.0.1:{self.port}")
            outcome = self.auth.check(
                secure=self.scheme == "https",
                method=request.method,
                base_url=f"{self.scheme}://{host}{request.url.path}",
                query=query,
                authorization=request.headers.get("authorization"),
            )
            if outcome.error is not None:
                return _unauthorized(*outcome.error)
            if outcome.key is None:
                return _unauthorized(*_FORBIDDEN[action])
            writes = action in ("create", "edit", "delete")
            if writes and self.key_permissions == "read":
                message = "The API key provided does not have write permissions."
                return _unauthorized("woocommerce_rest_authentication_error", message)
            if not writes and self.key_permissions == "write":
                message = "The API key provided does not have read permissions."
                return _unauthorized("woocommerce_rest_authentication_error", message)
            try:
                return await handler(request)
            except WcError as exc:
                return JSONResponse(exc.body(), status_code=exc.status)

        return endpoint

    async def _storefront(self, request: Request) -> Response:
        return HTMLResponse("<!doctype html><title>Sandbox shop</title><h1>Sandbox shop</h1>")

    async def _no_route(self, request: Request) -> Response:
        body = {
            "code": "rest_no_route",
            "message": "No route was found matching the URL and request method.",
            "data": {"status": 404},
        }
        return JSONResponse(body, status_code=404)

    # -- coupons --------------------------------------------------------------------------------

    async def create_coupon(self, request: Request) -> Response:
        body = await _json_body(request)
        with self.lock:
            coupon = self.store.create(body, datetime.now(UTC))
            return JSONResponse(coupon_json(coupon, self.base_url), status_code=201)

    async def list_coupons(self, request: Request) -> Response:
        q = request.query_params
        page, per_page = (
            _positive(q.get("page"), 1, "page"),
            _positive(q.get("per_page"), 10, "per_page"),
        )
        if per_page > PER_PAGE_MAX:
            raise WcError(
                400,
                "rest_invalid_param",
                "Invalid parameter(s): per_page",
                params={"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"},
            )
        with self.lock:
            found = self.store.list(q.get("code"), q.get("search"))
            chunk = found[(page - 1) * per_page : page * per_page]
            body = [coupon_json(c, self.base_url) for c in chunk]
        pages = max(1, math.ceil(len(found) / per_page)) if found else 0
        headers = {"X-WP-Total": str(len(found)), "X-WP-TotalPages": str(pages)}
        return JSONResponse(body, headers=headers)

    async def get_coupon(self, request: Request) -> Response:
        with self.lock:
            coupon = self.store.get(request.path_params["coupon_id"])
            return JSONResponse(coupon_json(coupon, self.base_url))

    async def update_coupon(self, request: Request) -> Response:
        body = await _json_body(request)
        with self.lock:
            coupon = self.store.update(request.path_params["coupon_id"], body, datetime.now(UTC))
            return JSONResponse(coupon_json(coupon, self.base_url))

    async def delete_coupon(self, request: Request) -> Response:
        force = request.query_params.get("force", "").lower() in ("true", "1")
        with self.lock:
            coupon = self.store.get(request.path_params["coupon_id"])
            body = coupon_json(coupon, self.base_url)
            if force:
                del self.store.coupons[coupon.id]
            elif coupon.status == "trash":
                raise WcError(
                    410, "woocommerce_rest_already_trashed", "The coupon has already been deleted."
                )
            else:
                coupon.status = "trash"
                body["status"] = "trash"
        return JSONResponse(body)


def _unauthorized(code: str, message: str) -> Response:
    body = {"code": code, "message": message, "data": {"status": 401}}
    headers = {"WWW-Authenticate": 'Basic realm="WooCommerce REST API"'}
    return JSONResponse(body, status_code=401, headers=headers)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise WcError(
            400,
            "rest_invalid_json",
            "Invalid JSON body passed.",
            json_error_code=4,
            json_error_message="Syntax error",
        ) from None
    if not isinstance(body, dict):
        raise WcError(400, "rest_invalid_json", "Invalid JSON body passed.")
    return body


def _positive(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        message = f"{name} must be greater than or equal to 1"
        raise WcError(
            400, "rest_invalid_param", f"Invalid parameter(s): {name}", params={name: message}
        )
    return int(value)

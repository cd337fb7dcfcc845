"""Shopify reward codes through the Admin GraphQL API (the ShopifyAPI package).

`discountCodeBasicCreate` (an amount or a percentage off) and
`discountCodeFreeShippingCreate`, limited to the member's customer, once,
until the redemption expires; `codeDiscountNodeByCode` finds a code again.
Answers are sorted by what to do: THROTTLED, 429 and 5xx are retriable, a
timeout or a dropped connection is a lost answer, `TAKEN` means the code
exists, and any other user error or 4xx is a refusal.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shopify

from loyalty.errors import ConfigError, RetriableError
from loyalty.settings import Settings
from shops.codes import CodeRequest, CodeTaken, LostAnswer, ShopCode, ShopRefused

__all__ = ["ShopifyShop"]

#: Seconds a GraphQL call may take before its answer counts as lost.
TIMEOUT_SECONDS = 15.0
#: Wait before a retry when the shop gives no hint.
DEFAULT_RETRY_SECONDS = 2.0

LOOKUP = """
query rewardCode($code: String!) {
  codeDiscountNodeByCode(code: $code) { id }
}
"""

CREATE_BASIC = """
mutation rewardCodeBasic($basicCodeDiscount: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $basicCodeDiscount) {
    codeDiscountNode { id }
    userErrors { field message code }
  }
}
"""

CREATE_FREE_SHIPPING = """
mutation rewardCodeFreeShipping($freeShippingCodeDiscount: DiscountCodeFreeShippingInput!) {
  discountCodeFreeShippingCreate(freeShippingCodeDiscount: $freeShippingCodeDiscount) {
    codeDiscountNode { id }
    userErrors { field message code }
  }
}
"""

#: Failures after which the request may have landed.
_LOST = (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException)


class _GraphQL(shopify.GraphQL):  # type: ignore[misc]
    """The library's GraphQL client with a timeout, a CA file, and no printing of error bodies."""

    def __init__(self, endpoint: str, context: ssl.SSLContext | None, timeout: float) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.context = context
        self.timeout = timeout

    def execute(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        operation_name: str | None = None,
    ) -> str:
        headers = self.merge_headers(
            {"Accept": "application/json", "Content-Type": "application/json"}, self.headers
        )
        body = json.dumps({"query": query, "variables": variables, "operationName": operation_name})
        request = urllib.request.Request(self.endpoint, body.encode(), headers)
        with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as answer:
            return str(answer.read().decode("utf-8"))


@dataclass
class ShopifyShop:
    domain: str
    access_token: str
    api_version: str
    ca_file: Path | None = None
    timeout: float = TIMEOUT_SECONDS
    name: str = "shopify"

    @classmethod
    def from_settings(cls, settings: Settings) -> ShopifyShop:
        if not settings.shopify_shop_domain or not settings.shopify_access_token:
            raise ConfigError(
                "Shopify needs SHOPIFY_SHOP_DOMAIN and SHOPIFY_ACCESS_TOKEN (an Admin API "
                "token with the write_discounts scope)"
            )
        return cls(
            domain=settings.shopify_shop_domain,
            access_token=settings.shopify_access_token,
            api_version=settings.shopify_api_version,
            ca_file=settings.shopify_ca_bundle,
            timeout=settings.provider_timeout_seconds,
        )

    @property
    def host(self) -> str:
        """`acme` → `acme.myshopify.com`; a host with a port (an emulator) stays as given."""
        host = self.domain.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
        return host if "." in host or ":" in host else f"{host}.myshopify.com"

    def _client(self) -> _GraphQL:
        session = shopify.Session(self.host, self.api_version, self.access_token)
        shopify.ShopifyResource.activate_session(session)  # per thread: headers and site
        endpoint = f"https://{self.host}/admin/api/{self.api_version}/graphql.json"
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        return _GraphQL(endpoint, context, self.timeout)

    def _call(self, query: str, variables: dict[str, Any], *, lost_is_retriable: bool) -> Any:
        try:
            text = self._client().execute(query, variables)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc, lost_is_retriable) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError | ConnectionRefusedError | socket.gaierror):
                # Nothing left: the connection never opened.
                raise RetriableError(
                    f"shopify unreachable ({exc.reason})", DEFAULT_RETRY_SECONDS
                ) from None
            raise self._lost(str(exc.reason), lost_is_retriable) from None
        except _LOST as exc:
            raise self._lost(type(exc).__name__, lost_is_retriable) from None
        try:
            answer = json.loads(text)
        except ValueError:
            raise self._lost("an answer that is not JSON", lost_is_retriable) from None
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if errors:
            raise self._top_level_error(answer, errors)
        return answer.get("data") or {}

    def _lost(self, what: str, lost_is_retriable: bool) -> Exception:
        if lost_is_retriable:
            return RetriableError(f"shopify: {what}", DEFAULT_RETRY_SECONDS)
        return LostAnswer(what)

    def _http_error(self, exc: urllib.error.HTTPError, lost_is_retriable: bool) -> Exception:
        status = exc.code
        if status == 429:
            return RetriableError("shopify: 429 too many requests", _retry_after(exc))
        if status >= 500:
            return self._lost(f"HTTP {status}", lost_is_retriable)
        if status in (401, 403):
            return ShopRefused(f"HTTP {status}: check SHOPIFY_ACCESS_TOKEN and its scopes")
        return ShopRefused(f"HTTP {status}")

    def _top_level_error(self, answer: dict[str, Any], errors: Any) -> Exception:
        items: list[Any] = errors if isinstance(errors, list) else [{"message": str(errors)}]
        codes = {str((e.get("extensions") or {}).get("code")) for e in items if isinstance(e, dict)}
        if "THROTTLED" in codes:
            return RetriableError("shopify: THROTTLED", _throttle_wait(answer))
        if "INTERNAL_SERVER_ERROR" in codes:
            return RetriableError("shopify: internal error", DEFAULT_RETRY_SECONDS)
        messages = "; ".join(str(e.get("message")) for e in items if isinstance(e, dict))
        return ShopRefused(messages or "GraphQL errors")

    def find(self, code: str) -> ShopCode | None:
        data = self._call(LOOKUP, {"code": code}, lost_is_retriable=True)
        node = data.get("codeDiscountNodeByCode")
        return ShopCode(code, str(node["id"])) if node else None

    def create(self, request: CodeRequest) -> ShopCode:
        discount: dict[str, Any] = {
            "title": request.title,
            "code": request.code,
            "startsAt": request.starts_at.isoformat(),
            "endsAt": request.ends_at.isoformat() if request.ends_at else None,
            "customerSelection": (
                {"customers": {"add": [request.customer_id]}}
                if request.customer_id
                else {"all": True}
            ),
            "appliesOncePerCustomer": True,
            "usageLimit": request.usage_limit,
        }
        if request.kind == "free_shipping":
            discount["destination"] = {"all": True}
            query, variables, field = (
                CREATE_FREE_SHIPPING,
                {"freeShippingCodeDiscount": discount},
                "discountCodeFreeShippingCreate",
            )
        else:
            discount["customerGets"] = {"value": _value(request), "items": {"all": True}}
            query, variables, field = (
                CREATE_BASIC,
                {"basicCodeDiscount": discount},
                "discountCodeBasicCreate",
            )
        result = self._call(query, variables, lost_is_retriable=False).get(field) or {}
        user_errors = result.get("userErrors") or []
        if any(str(e.get("code")) == "TAKEN" for e in user_errors):
            raise CodeTaken(request.code)
        if user_errors:
            raise ShopRefused(
                "; ".join(f"{e.get('field')}: {e.get('message')}" for e in user_errors)
            )
        node = result.get("codeDiscountNode")
        if not node:
            raise LostAnswer("an answer without the discount")
        return ShopCode(request.code, str(node["id"]))


def _value(request: CodeRequest) -> dict[str, Any]:
    if request.value is None:
        raise ShopRefused(f"a {request.kind} reward without a value")
    if request.kind == "percentage":
        return {"percentage": float(request.value / 100)}
    return {"discountAmount": {"amount": str(request.value), "appliesOnEachItem": False}}


def _retry_after(exc: urllib.error.HTTPError) -> float:
    try:
        return max(float(exc.headers.get("Retry-After", DEFAULT_RETRY_SECONDS)), 0.0)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_SECONDS


def _throttle_wait(answer: dict[str, Any]) -> float:
    """Seconds until the bucket holds the query's cost again (extensions.cost)."""
    cost = (answer.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    try:
        wanted = float(cost.get("requestedQueryCost") or 0)
        available = float(status.get("currentlyAvailable") or 0)
        rate = float(status.get("restoreRate") or 0)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_SECONDS
    if rate <= 0 or wanted <= available:
        return DEFAULT_RETRY_SECONDS
    return (wanted - available) / rate

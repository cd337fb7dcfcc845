"""WooCommerce reward coupons through REST v3 (the `woocommerce` package).

`POST coupons` limited to the member's e-mail, one use, until the redemption
expires; `GET coupons?code=` finds a coupon again. A duplicate code
(`woocommerce_rest_coupon_code_already_exists`) means the code exists; 429 and
5xx are retriable; a timeout or a dropped connection is a lost answer; any
other 4xx (bad keys, a field the shop refuses) is a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

import requests
from woocommerce import API

from loyalty.errors import ConfigError, RetriableError
from loyalty.settings import Settings
from shops.codes import CodeRequest, CodeTaken, LostAnswer, ShopCode, ShopRefused

__all__ = ["WooCommerceShop"]

DEFAULT_RETRY_SECONDS = 2.0
DUPLICATE = "woocommerce_rest_coupon_code_already_exists"


@dataclass
class WooCommerceShop:
    url: str
    consumer_key: str
    consumer_secret: str
    timeout: float = 15.0
    name: str = "woocommerce"

    @classmethod
    def from_settings(cls, settings: Settings) -> WooCommerceShop:
        if not (
            settings.woocommerce_url
            and settings.woocommerce_consumer_key
            and settings.woocommerce_consumer_secret
        ):
            raise ConfigError(
                "WooCommerce needs WOOCOMMERCE_URL, WOOCOMMERCE_CONSUMER_KEY and "
                "WOOCOMMERCE_CONSUMER_SECRET (a REST key with read/write access)"
            )
        return cls(
            url=settings.woocommerce_url,
            consumer_key=settings.woocommerce_consumer_key,
            consumer_secret=settings.woocommerce_consumer_secret,
            timeout=settings.provider_timeout_seconds,
        )

    def _api(self) -> API:
        return API(
            url=self.url,
            consumer_key=self.consumer_key,
            consumer_secret=self.consumer_secret,
            version="wc/v3",
            timeout=self.timeout,
        )

    def _send(self, method: str, *, lost_is_retriable: bool, **kwargs: Any) -> Any:
        api = self._api()
        try:
            if method == "GET":
                answer = api.get("coupons", **kwargs)
            else:
                answer = api.post("coupons", kwargs.pop("data"), **kwargs)
        except requests.exceptions.ConnectTimeout:
            raise RetriableError(
                "woocommerce unreachable (connect timeout)", DEFAULT_RETRY_SECONDS
            ) from None
        except (requests.exceptions.SSLError, requests.exceptions.ProxyError) as exc:
            raise RetriableError(f"woocommerce unreachable ({type(exc).__name__})") from None
        except (requests.exceptions.Timeout, requests.exceptions.ConnectionError) as exc:
            if _never_connected(exc):
                raise RetriableError("woocommerce unreachable", DEFAULT_RETRY_SECONDS) from None
            if lost_is_retriable:
                raise RetriableError(
                    f"woocommerce: {type(exc).__name__}", DEFAULT_RETRY_SECONDS
                ) from None
            raise LostAnswer(type(exc).__name__) from None
        status = answer.status_code
        if status == 429:
            raise RetriableError("woocommerce: 429 too many requests", _retry_after(answer))
        if status >= 500:
            if lost_is_retriable:
                raise RetriableError(f"woocommerce: HTTP {status}", DEFAULT_RETRY_SECONDS)
            raise LostAnswer(f"HTTP {status}")
        try:
            body = answer.json()
        except ValueError:
            body = None
        if status >= 400:
            code = body.get("code") if isinstance(body, dict) else None
            if code == DUPLICATE:
                raise CodeTaken(str(kwargs.get("data", {}).get("code", "")))
            message = body.get("message") if isinstance(body, dict) else None
            hint = ": check the WooCommerce keys" if status in (401, 403) else ""
            raise ShopRefused(f"HTTP {status} {code or ''} {message or ''}".strip() + hint)
        if body is None:
            if lost_is_retriable:
                raise RetriableError("woocommerce: an answer that is not JSON")
            raise LostAnswer("an answer that is not JSON")
        return body

    def find(self, code: str) -> ShopCode | None:
        body = self._send("GET", lost_is_retriable=True, params={"code": code})
        for coupon in body if isinstance(body, list) else []:
            # WooCommerce keeps coupon codes in lower case.
            if isinstance(coupon, dict) and str(coupon.get("code", "")).lower() == code.lower():
                return ShopCode(code, str(coupon.get("id")))
        return None

    def create(self, request: CodeRequest) -> ShopCode:
        coupon: dict[str, Any] = {
            "code": request.code,
            "description": request.title,
            "individual_use": True,
            "usage_limit": request.usage_limit,
            "usage_limit_per_user": 1,
            "date_expires": (
                request.ends_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
                if request.ends_at
                else None
            ),
            "email_restrictions": [request.email] if request.email else [],
        }
        if request.kind == "free_shipping":
            coupon.update(discount_type="fixed_cart", amount="0", free_shipping=True)
        elif request.kind == "percentage":
            coupon.update(discount_type="percent", amount=str(request.value))
        else:
            coupon.update(discount_type="fixed_cart", amount=str(request.value))
        body = self._send("POST", lost_is_retriable=False, data=coupon)
        if not isinstance(body, dict) or body.get("id") is None:
            raise LostAnswer("an answer without the coupon")
        return ShopCode(request.code, str(body["id"]))


def _never_connected(exc: Exception) -> bool:
    text = str(exc)
    return "Connection refused" in text or "Name or service not known" in text


def _retry_after(answer: requests.Response) -> float:
    try:
        return max(float(answer.headers.get("Retry-After", DEFAULT_RETRY_SECONDS)), 0.0)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_SECONDS

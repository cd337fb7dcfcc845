"""Reward codes at the shop: derived from the redemption, made once, found again when lost.

The code string is `LJ-` plus 12 base32 characters of an HMAC of the
redemption id (REWARD_CODE_SECRET), so every try for one redemption asks for
the same code. A try first looks the code up; after a lost answer (timeout,
dropped connection, 5xx) or a "code taken" answer it looks again, so a retry
finds the code instead of making a second. A refusal that retrying cannot
change (a 4xx, a user error other than "taken", a bad token) marks the
redemption failed and gives the points back; throttling and 5xx are retried.

With no shop configured (the embedded default) codes are issued locally: the
redemption is issued with its code and no shop is called.

    ShopError
    ├── CodeTaken      the shop already has a code with this string
    ├── LostAnswer     the request may have landed: look before trying again
    └── ShopRefused    a definitive no: fail the redemption, return the points
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from loyalty import ledger
from loyalty.app import App
from loyalty.errors import ConfigError, RetriableError
from loyalty.event_types import INTERNAL_SOURCE, EventInput
from loyalty.events import record_event
from loyalty.models import Member, Redemption
from loyalty.redemptions import mark_failed, mark_issued
from loyalty.rewards import RedemptionState, cached_catalog
from loyalty.settings import Settings

__all__ = [
    "CODE_PREFIX",
    "CodeRequest",
    "CodeTaken",
    "LostAnswer",
    "Shop",
    "ShopCode",
    "ShopError",
    "ShopRefused",
    "code_for",
    "code_secret",
    "issue_code",
    "make_at_shop",
    "shop_for",
]

log = logging.getLogger(__name__)

#: Every reward code starts with this, so shop staff can tell ours.
CODE_PREFIX = "LJ-"
#: Characters after the prefix: 60 bits, beyond guessing.
CODE_CHARS = 12
#: The secret used when no shop is configured and REWARD_CODE_SECRET is unset (local codes).
LOCAL_SECRET = "loyalty-journeys-local-codes"
#: Wait before a try after a lost answer whose code the shop does not show yet.
LOST_ANSWER_RETRY_SECONDS = 5.0
#: Member attribute holding the Shopify customer id (numeric or gid).
SHOPIFY_CUSTOMER_ATTRIBUTE = "shopify_customer_id"


class ShopError(Exception):
    """A shop's answer to a code request that is not a plain success."""


class CodeTaken(ShopError):
    """The shop already has a discount with this code."""


class LostAnswer(ShopError):
    """The request left and no usable answer came back: it may or may not have landed."""


class ShopRefused(ShopError):
    """The shop said no in a way retrying cannot change."""


@dataclass(frozen=True)
class CodeRequest:
    """One discount code to create, in shop-neutral terms."""

    code: str
    title: str
    #: A RewardKind: fixed_amount, percentage or free_shipping.
    kind: str
    #: The amount off (fixed_amount) or the percent off (percentage).
    value: Decimal | None
    currency: str | None
    starts_at: datetime
    #: None: the code does not expire.
    ends_at: datetime | None
    #: Shopify: the customer gid the code is limited to; None: any customer, once.
    customer_id: str | None
    #: WooCommerce: the e-mail address the coupon is limited to.
    email: str | None
    #: Uses in all (each customer once either way); None: no limit (a shared friend code).
    usage_limit: int | None = 1


@dataclass(frozen=True)
class ShopCode:
    code: str
    #: The shop's id of the discount (a gid, a coupon id).
    shop_id: str


class Shop(Protocol):
    name: str

    def find(self, code: str) -> ShopCode | None:
        """The code at the shop, or None. Raises RetriableError or ShopRefused."""
        ...

    def create(self, request: CodeRequest) -> ShopCode:
        """Create the code. Raises CodeTaken, LostAnswer, RetriableError or ShopRefused."""
        ...


def code_for(redemption_id: int, secret: str) -> str:
    """`LJ-` + 12 base32 characters of HMAC-SHA256(secret, redemption id)."""
    digest = hmac.new(secret.encode(), f"redemption:{redemption_id}".encode(), hashlib.sha256)
    return CODE_PREFIX + base64.b32encode(digest.digest()).decode()[:CODE_CHARS]


def shop_for(settings: Settings) -> Shop | None:
    """The shop that creates codes, from settings; None when no shop is configured."""
    if settings.shopify_shop_domain:
        from shops.shopify import ShopifyShop

        return ShopifyShop.from_settings(settings)
    if settings.woocommerce_url:
        from shops.woocommerce import WooCommerceShop

        return WooCommerceShop.from_settings(settings)
    return None


def code_secret(settings: Settings, shop: Shop | None) -> str:
    """The key codes are derived from: REWARD_CODE_SECRET (required with a shop)."""
    if settings.reward_code_secret:
        return settings.reward_code_secret
    if shop is None:
        return LOCAL_SECRET
    raise ConfigError(
        "REWARD_CODE_SECRET is not set: reward codes at the shop are derived from it; "
        "set it to a long random string and keep it"
    )


def _request(redemption: Redemption, member: Member, code: str) -> CodeRequest:
    customer = member.attributes.get(SHOPIFY_CUSTOMER_ATTRIBUTE) if member.attributes else None
    if customer is None and member.external_id.isdigit():
        customer = member.external_id  # shop customers become members under their shop id
    gid = None
    if customer is not None:
        text = str(customer)
        gid = text if text.startswith("gid://") else f"gid://shopify/Customer/{text}"
    return CodeRequest(
        code=code,
        title=f"Loyalty reward {redemption.reward_id} ({code})",
        kind=redemption.kind,
        value=redemption.value,
        currency=redemption.currency,
        starts_at=redemption.created_at,
        ends_at=redemption.expires_at,
        customer_id=gid,
        email=member.email,
    )


def make_at_shop(shop: Shop, request: CodeRequest) -> ShopCode:
    """The code at the shop: found when an earlier try landed, else created (once)."""
    found = shop.find(request.code)
    if found is not None:
        return found  # an earlier try landed
    try:
        return shop.create(request)
    except CodeTaken:
        found = shop.find(request.code)
        if found is None:
            raise ShopRefused(
                f"the shop says code {request.code} is taken but cannot find it"
            ) from None
        return found
    except LostAnswer as exc:
        found = shop.find(request.code)
        if found is None:
            raise RetriableError(
                f"{shop.name}: {exc}; the code is not there yet",
                retry_after=LOST_ANSWER_RETRY_SECONDS,
            ) from None
        return found


def issue_code(app: App, redemption_id: int, shop: Shop | None = None) -> list[int]:
    """Create the redemption's code at the shop (or locally) and settle it; safe to run twice.

    Returns the ids of the events this caused (`reward.redeemed` when issued,
    `reward.available` when refused points bring the balance back up).
    """
    settings = app.settings
    with app.database.sessions() as session:
        redemption = session.get(Redemption, redemption_id)
        if redemption is None or redemption.state != RedemptionState.PENDING:
            return []
        member = session.get(Member, redemption.member_id)
        assert member is not None
    shop = shop if shop is not None else shop_for(settings)
    code = code_for(redemption_id, code_secret(settings, shop))
    if shop is None:
        return _issued(app, redemption_id, ShopCode(code, code), "local")
    try:
        made = make_at_shop(shop, _request(redemption, member, code))
    except ShopRefused as exc:
        log.warning(
            "reward.code_refused",
            extra={"redemption_id": redemption_id, "member_id": member.id, "shop": shop.name},
        )
        return _failed(app, redemption_id, f"{shop.name} refused the code: {exc}", shop.name)
    return _issued(app, redemption_id, made, shop.name)


def _issued(app: App, redemption_id: int, made: ShopCode, shop: str) -> list[int]:
    now = app.clock.now()
    with app.database.transaction() as session:
        redemption = mark_issued(
            session, redemption_id, code=made.code, shop=shop, shop_code_id=made.shop_id, now=now
        )
        if redemption is None:
            return []
        member = session.get(Member, redemption.member_id)
        assert member is not None
        event, _ = record_event(
            session,
            EventInput(
                type="reward.redeemed",
                member=member.external_id,
                id=f"redemption:{redemption.id}",
                data={
                    "redemption_id": redemption.id,
                    "reward": redemption.reward_id,
                    "points": redemption.points,
                    "code": redemption.code,
                    "kind": redemption.kind,
                    "value": None if redemption.value is None else str(redemption.value),
                    "currency": redemption.currency,
                    "expires_at": redemption.expires_at.isoformat(),
                },
                source=INTERNAL_SOURCE,
            ),
            settings=app.settings,
            now=now,
        )
    log.info(
        "reward.code_issued",
        extra={"redemption_id": redemption_id, "member_id": redemption.member_id, "shop": shop},
    )
    return [event.id]


def _failed(app: App, redemption_id: int, reason: str, shop: str) -> list[int]:
    settings = app.settings
    now = app.clock.now()
    with app.database.transaction() as session:
        caused = mark_failed(
            session,
            redemption_id,
            reason,
            shop=shop,
            catalog=cached_catalog(settings.journeys_dir, settings.tier_thresholds),
            thresholds=settings.tier_thresholds,
            expiry_days=settings.points_expiry_days,
            now=now,
        )
        recorded = [
            record_event(session, event, settings=settings, now=now)[0].id for event in caused
        ]
        return recorded + ledger.take_emitted(session)

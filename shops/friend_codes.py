"""The discount a referral link gives friends: one code per referrer, made at the shop once.

The code is `LJ-F` plus 12 base32 characters of an HMAC (REWARD_CODE_SECRET) of
the referrer's referral code, so the same link always gives the same code, and
the code is known before the shop has it. It is the REFERRAL_FRIEND_REWARD of the
catalog, for any customer once each, with no total limit and no expiry (it lasts
as long as the link); that it pays only on a friend's first order is ours to
decide, at the order (the shop's basic codes cannot tell a first order).

It is made through the same adapters and the same find-then-create steps as
reward codes (`shops.codes`), so a retry after a lost answer finds it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote

from sqlalchemy import select, update

from loyalty.app import App
from loyalty.db import insert_ignore
from loyalty.errors import ConfigError, RetriableError
from loyalty.models import Member, ReferralFriendCode
from loyalty.rewards import FixedAmount, Percentage, RedemptionState, load_catalog
from loyalty.settings import Settings
from shops.codes import (
    CODE_CHARS,
    CodeRequest,
    Shop,
    ShopError,
    ShopRefused,
    code_secret,
    make_at_shop,
    shop_for,
)

__all__ = ["FRIEND_PREFIX", "FriendCode", "friend_code", "friend_code_for", "landing_url"]

log = logging.getLogger(__name__)

#: Friend codes start with this (reward codes with `LJ-` and one character fewer).
FRIEND_PREFIX = "LJ-F"


@dataclass(frozen=True)
class FriendCode:
    code: str
    #: A RedemptionState: issued (the shop has it), pending (not yet), failed (refused).
    state: str


def friend_code_for(referral_code: str, secret: str) -> str:
    """`LJ-F` + 12 base32 characters of HMAC-SHA256(secret, referral code)."""
    digest = hmac.new(secret.encode(), f"referral:{referral_code}".encode(), hashlib.sha256)
    return FRIEND_PREFIX + base64.b32encode(digest.digest()).decode()[:CODE_CHARS]


def landing_url(settings: Settings, code: str | None) -> str | None:
    """Where a referral link leads: the storefront, with the friend's code applied.

    Shopify's shareable discount link is `{shop}/discount/{code}`; WooCommerce has
    no such link of its own, and the common coupon-by-URL plugins read
    `?apply_coupon={code}`. None when no storefront is known.
    """
    base = settings.shop_url or (
        f"https://{settings.shopify_shop_domain}" if settings.shopify_shop_domain else None
    )
    base = base or settings.woocommerce_url
    if not base:
        return None
    base = base.rstrip("/")
    if code is None:
        return base + "/"
    if settings.woocommerce_url and not settings.shopify_shop_domain:
        return f"{base}/?apply_coupon={quote(code, safe='')}"
    return f"{base}/discount/{quote(code, safe='')}"


def friend_code(app: App, referrer_id: int, shop: Shop | None = None) -> FriendCode | None:
    """The referrer's friend code, made at the shop (or locally) the first time it is asked for.

    None when no friend reward is configured. A shop that does not answer leaves it
    pending (the next visit tries again); a definitive refusal marks it failed.
    """
    settings = app.settings
    reward_id = settings.referral_friend_reward
    if not reward_id:
        return None
    now = app.clock.now()
    shop = shop if shop is not None else shop_for(settings)
    with app.database.transaction() as session:
        referrer = session.get_one(Member, referrer_id)
        code = friend_code_for(referrer.referral_code, code_secret(settings, shop))
        insert_ignore(
            session,
            ReferralFriendCode,
            [
                {
                    "referrer_id": referrer_id,
                    "code": code,
                    "reward_id": reward_id,
                    "state": RedemptionState.PENDING,
                    "created_at": now,
                }
            ],
            ["referrer_id"],
        )
        row = session.scalars(
            select(ReferralFriendCode).where(ReferralFriendCode.referrer_id == referrer_id)
        ).one()
        found = FriendCode(row.code, row.state)
    if found.state != RedemptionState.PENDING:
        return found
    if shop is None:
        return _settle(app, referrer_id, RedemptionState.ISSUED, shop="local", shop_id=found.code)
    try:
        made = make_at_shop(shop, _request(settings, found.code, now))
    except ShopRefused as exc:
        log.warning("referral.friend_code_refused", extra={"referrer_id": referrer_id})
        return _settle(app, referrer_id, RedemptionState.FAILED, shop=shop.name, error=str(exc))
    except (ShopError, RetriableError) as exc:
        log.warning(
            "referral.friend_code_later",
            extra={"referrer_id": referrer_id, "error": type(exc).__name__},
        )
        return found
    return _settle(app, referrer_id, RedemptionState.ISSUED, shop=shop.name, shop_id=made.shop_id)


def _request(settings: Settings, code: str, now: datetime) -> CodeRequest:
    catalog = load_catalog(settings.journeys_dir, settings.tier_thresholds)
    reward = catalog.get(settings.referral_friend_reward or "")
    if reward is None:
        raise ConfigError(
            f"REFERRAL_FRIEND_REWARD names {settings.referral_friend_reward!r}, "
            "which is not in the rewards catalog"
        )
    value: Decimal | None = None
    currency: str | None = None
    if isinstance(reward, Percentage):
        value = reward.percentage
    elif isinstance(reward, FixedAmount):
        # The shop applies a fixed amount in its own currency: the catalog's first one.
        currency, value = next(iter(reward.value.items()))
    return CodeRequest(
        code=code,
        title=f"Referral friend discount {reward.id} ({code})",
        kind=reward.kind,
        value=value,
        currency=currency,
        starts_at=now,
        ends_at=None,
        customer_id=None,
        email=None,
        usage_limit=None,
    )


def _settle(
    app: App,
    referrer_id: int,
    state: RedemptionState,
    *,
    shop: str,
    shop_id: str | None = None,
    error: str | None = None,
) -> FriendCode:
    now = app.clock.now()
    with app.database.transaction() as session:
        session.execute(
            update(ReferralFriendCode)
            .where(
                ReferralFriendCode.referrer_id == referrer_id,
                ReferralFriendCode.state == RedemptionState.PENDING,
            )
            .values(
                state=state,
                shop=shop,
                shop_code_id=shop_id,
                error=None if error is None else error[:1000],
                issued_at=now if state == RedemptionState.ISSUED else None,
            )
        )
        row = session.scalars(
            select(ReferralFriendCode).where(ReferralFriendCode.referrer_id == referrer_id)
        ).one()
        return FriendCode(row.code, row.state)

"""The tables of rewards and referrals: redemptions, reward notices, referral clicks and
friend codes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.model_base import Base, Id, member_fk
from loyalty.rewards import RedemptionState
from loyalty.states import sql_in

__all__ = ["Redemption", "ReferralClick", "ReferralFriendCode", "RewardNotice"]


class Redemption(Base):
    """Points turned into a reward: taken once per (member, idempotency key), then a shop code.

    pending → issued (the shop has the code) | failed (the shop refused it; points returned).
    """

    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key"),
        CheckConstraint(sql_in("state", RedemptionState), name="state"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = member_fk()
    idempotency_key: Mapped[str] = mapped_column(String(255))
    reward_id: Mapped[str] = mapped_column(String(64))
    #: The reward's kind at redemption time (fixed_amount, percentage, free_shipping).
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger)
    #: A RedemptionState.
    state: Mapped[str] = mapped_column(String(16), index=True)
    code: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: The amount off (fixed_amount, in `currency`) or the percent off (percentage).
    value: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    expires_at: Mapped[datetime]
    #: Where the code lives: shopify, woocommerce, or local (no shop configured).
    shop: Mapped[str | None] = mapped_column(String(32))
    #: The shop's id of the code (a Shopify discount gid, a WooCommerce coupon id).
    shop_code_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    issued_at: Mapped[datetime | None]


class RewardNotice(Base):
    """Whether a member's balance stands at a reward's cost: `reward.available` once per rise."""

    __tablename__ = "reward_notices"
    __table_args__ = (UniqueConstraint("member_id", "reward_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = member_fk()
    reward_id: Mapped[str] = mapped_column(String(64))
    reached: Mapped[bool] = mapped_column(Boolean)
    #: How many times the balance rose to the cost; names each `reward.available` event.
    crossings: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime]


class ReferralClick(Base):
    """One visit of a referral link: when, and digests (never the raw values) of who."""

    __tablename__ = "referral_clicks"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    referrer_id: Mapped[int] = member_fk()
    code: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(index=True)
    #: Keyed digests of the visitor's IP address and user agent.
    ip_hash: Mapped[str | None] = mapped_column(String(64))
    user_agent_hash: Mapped[str | None] = mapped_column(String(64))


class ReferralFriendCode(Base):
    """The discount a referrer's link gives friends: one per referrer, derived from their code.

    pending → issued (the shop has it) | failed (the shop refused it for good).
    """

    __tablename__ = "referral_friend_codes"
    __table_args__ = (CheckConstraint(sql_in("state", RedemptionState), name="state"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    referrer_id: Mapped[int] = mapped_column(Id, ForeignKey("members.id"), unique=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    reward_id: Mapped[str] = mapped_column(String(64))
    #: A RedemptionState.
    state: Mapped[str] = mapped_column(String(16))
    #: shopify, woocommerce, or local (no shop configured).
    shop: Mapped[str | None] = mapped_column(String(32))
    shop_code_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    issued_at: Mapped[datetime | None]

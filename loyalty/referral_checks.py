"""Fraud checks on a referral, before the referrer is paid: pure functions over what is known.

Each check that fires names a reason; a referral with any reason waits for a person
(`loyalty referrals review`). The checks compare the friend (the referee and their
first order) with the referrer (their profile and their own orders):

- `self_referral`: the referrer used their own link's code.
- `same_email`: one mailbox, once case, `+tags` and Gmail's dots are set aside
  (`Anna.Nowak+shop@googlemail.com` is `annanowak@gmail.com`).
- `same_phone`: the same number (digits only).
- `same_address`: the friend's order ships to an address one of the referrer's orders
  shipped to (the webhooks keep a digest of it, never the address).
- `same_ip`: the friend's order came from a browser IP one of the referrer's orders
  came from (when the shop sends one). Clicks on the link are not compared: the friend
  clicking it from their own device is how a referral is meant to start.
- `velocity_day`, `velocity_week`: the referrer already has REFERRAL_MAX_PER_DAY (or
  _PER_WEEK) referrals whose first order fell in the day (week) before this one.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

__all__ = ["Party", "Velocity", "fraud_reasons", "normalised_email", "normalised_phone"]

#: Domains that ignore dots in the local part and are one mailbox.
_GMAIL = ("gmail.com", "googlemail.com")


def normalised_email(email: str | None) -> str | None:
    """The mailbox an address delivers to: lower case, no `+tag`, Gmail without dots."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.strip().casefold().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in _GMAIL:
        domain = _GMAIL[0]
        local = local.replace(".", "")
    return f"{local}@{domain}" if local and domain else None


def normalised_phone(phone: str | None) -> str | None:
    """The digits of a phone number (numbers are stored as E.164 already); None if too short."""
    digits = re.sub(r"\D", "", phone or "")
    return digits if len(digits) >= 6 else None


@dataclass(frozen=True)
class Party:
    """One side of a referral as the checks see it."""

    member_id: int
    email: str | None = None
    phone: str | None = None
    #: Browser IPs and shipping-address digests of the party's orders.
    ips: Collection[str] = field(default_factory=frozenset)
    addresses: Collection[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Velocity:
    """The referrer's other referrals whose first order fell in the day and week before."""

    last_day: int
    last_week: int
    max_per_day: int
    max_per_week: int


def fraud_reasons(referee: Party, referrer: Party, velocity: Velocity) -> list[str]:
    """Why this referral looks fraudulent (empty: it does not), in a fixed order."""
    reasons: list[str] = []
    if referee.member_id == referrer.member_id:
        reasons.append("self_referral")
    email = normalised_email(referee.email)
    if email is not None and email == normalised_email(referrer.email):
        reasons.append("same_email")
    phone = normalised_phone(referee.phone)
    if phone is not None and phone == normalised_phone(referrer.phone):
        reasons.append("same_phone")
    if set(referee.addresses) & set(referrer.addresses):
        reasons.append("same_address")
    if set(referee.ips) & set(referrer.ips):
        reasons.append("same_ip")
    if velocity.last_day >= velocity.max_per_day:
        reasons.append("velocity_day")
    if velocity.last_week >= velocity.max_per_week:
        reasons.append("velocity_week")
    return reasons

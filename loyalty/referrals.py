"""Referral codes and the referral lifecycle.

A friend arrives through the referrer's link (`/r/{CODE}`, a `referral_clicks` row)
with the referrer's friend discount code, or names the referrer's code at sign-up
(`referred_by_code`: a pending referral). The friend's first order matches the
referral (by that link, or by the friend code among the order's discount codes),
runs the fraud checks (`referral_checks`) and holds it until the order's return
window (REFERRAL_HOLD_DAYS) is over:

    pending ─first order─▶ held ──hold over (scheduler)──▶ completed: `referral.completed`
                      └──▶ review ─approve─▶ held             (the referrer is paid, once)
    held | review ─refund of that order, or reject─▶ rejected (nothing is paid)

The payout event's id is `referral:{id}`, so the referrer is paid once however
often the scheduler or a reviewer acts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loyalty.event_types import INTERNAL_SOURCE, EventInput, order_id_of
from loyalty.models import Event, Member, Referral, ReferralClick, ReferralFriendCode
from loyalty.referral_checks import Party, Velocity, fraud_reasons, normalised_email
from loyalty.settings import Settings
from loyalty.states import ReferralStatus

__all__ = [
    "CLICK_KEY",
    "new_referral_code",
    "new_referral_codes",
    "on_first_order",
    "payout_event",
    "record_click",
    "referral_link",
    "referral_verdict",
    "referrer_by_code",
    "void_on_refund",
]

# No 0/O, 1/I/L: codes are read aloud and typed from phones.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
#: Length of generated referral codes (31**10 ≈ 8e14 codes).
CODE_LENGTH = 10
_CODES = len(_ALPHABET) ** CODE_LENGTH
# Codes are spelled two letters at a time (least significant first, as one at a time).
_PAIRS = [b + a for a in _ALPHABET for b in _ALPHABET]
_PAIRS_BASE = len(_ALPHABET) ** 2
# Random bytes as letters (`new_referral_codes`): the bytes at or past a multiple of
# the alphabet's length are dropped, so that each letter is equally likely.
_KEPT = 256 - 256 % len(_ALPHABET)
_LETTERS = bytes(ord(_ALPHABET[b % len(_ALPHABET)]) for b in range(_KEPT)) + bytes(256 - _KEPT)
_DROPPED = bytes(range(_KEPT, 256))
#: Key of the click digests when REWARD_CODE_SECRET is unset.
CLICK_KEY = "loyalty-journeys-referral-clicks"
#: The referrer's own orders looked at for their IPs and shipping addresses.
KNOWN_ORDERS = 200
#: Statuses of referrals whose first order happened (counted by the velocity checks).
_ORDERED = (ReferralStatus.HELD, ReferralStatus.REVIEW, ReferralStatus.COMPLETED)


def new_referral_code() -> str:
    # One draw for the whole code, spelled in the alphabet.
    return _spelled(secrets.randbelow(_CODES))


def new_referral_codes(count: int) -> list[str]:
    """`count` codes drawn as `new_referral_code` draws one, from one read of the OS's randomness.

    Each letter is one random byte: a byte below 31 * 8 spells the letter it is
    (modulo 31), and a higher one is drawn again (dropped, as `secrets.randbelow`
    drops draws out of range). Every letter of every code is equally likely, so
    every code is.
    """
    letters = b""
    wanted = count * CODE_LENGTH
    while len(letters) < wanted:
        # About 3 % of the bytes are dropped: a few more are read than needed.
        missing = wanted - len(letters)
        data = secrets.token_bytes(missing + missing // 16 + 16)
        letters += data.translate(_LETTERS, _DROPPED)
    text = letters[:wanted].decode("ascii")
    return [text[i : i + CODE_LENGTH] for i in range(0, wanted, CODE_LENGTH)]


def _spelled(number: int) -> str:
    pairs = []
    for _ in range(CODE_LENGTH // 2):
        number, index = divmod(number, _PAIRS_BASE)
        pairs.append(_PAIRS[index])
    return "".join(pairs)


def referral_link(public_base_url: str, code: str) -> str:
    return f"{public_base_url.rstrip('/')}/r/{code}"


def referral_verdict(referee_email: str | None, referrer_email: str | None) -> str | None:
    """Why a referral looks fraudulent at sign-up, or None (noted; decided at the first order)."""
    email = normalised_email(referee_email)
    if email is not None and email == normalised_email(referrer_email):
        return "same_email"
    return None


def referrer_by_code(session: Session, code: str) -> Member | None:
    """The member whose referral link this is; None for an unknown or erased member's code."""
    member = session.scalar(select(Member).where(Member.referral_code == code.strip().upper()))
    return None if member is None or member.erased_at is not None else member


def record_click(
    session: Session,
    code: str,
    *,
    ip: str | None,
    user_agent: str | None,
    key: str,
    now: datetime,
) -> Member | None:
    """Record one visit of a referral link (digests only); the referrer, or None."""
    referrer = referrer_by_code(session, code)
    if referrer is None:
        return None
    session.add(
        ReferralClick(
            referrer_id=referrer.id,
            code=referrer.referral_code,
            at=now,
            ip_hash=_digest(ip, key),
            user_agent_hash=_digest(user_agent, key),
        )
    )
    return referrer


def _digest(value: str | None, key: str) -> str | None:
    if not value:
        return None
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def on_first_order(
    session: Session, referee: Member, order: Event, *, settings: Settings, now: datetime
) -> list[EventInput]:
    """Match the referee's first order to a referral, check it and hold it.

    Runs inside the order's transaction on the locked referee row. Returns the
    payout event when nothing is to be held (no hold days, or the window is over).
    """
    referral = session.scalar(select(Referral).where(Referral.referee_id == referee.id))
    if referral is None:
        referral = _match_friend_code(session, referee, order.payload.get("discount_codes"), now)
    if referral is None or referral.status != ReferralStatus.PENDING:
        return []
    referrer = session.get(Member, referral.referrer_id)
    assert referrer is not None
    ordered_at = order.occurred_at
    reasons = fraud_reasons(
        _party(referee, [order.payload]),
        _party(referrer, _order_payloads(session, referrer.id, exclude=order.id)),
        _velocity(session, referral, ordered_at, settings),
    )
    referral.order_id = order_id_of(order.payload)
    referral.ordered_at = ordered_at
    referral.hold_until = ordered_at + timedelta(days=settings.referral_hold_days)
    referral.reasons = ",".join(reasons) or None
    referral.fraud_verdict = reasons[0] if reasons else None
    referral.status = ReferralStatus.REVIEW if reasons else ReferralStatus.HELD
    if reasons or referral.hold_until > now:
        return []
    referral.status = ReferralStatus.COMPLETED
    referral.completed_at = now
    return [payout_event(session, referral)]


def _match_friend_code(
    session: Session, referee: Member, codes: object, now: datetime
) -> Referral | None:
    """A pending referral for the first order that used a referrer's friend code."""
    if not isinstance(codes, list):
        return None
    wanted = {str(code).strip().upper() for code in codes if str(code).strip()}
    if not wanted:
        return None
    friend_code = session.scalar(
        select(ReferralFriendCode)
        .where(ReferralFriendCode.code.in_(sorted(wanted)))
        .order_by(ReferralFriendCode.id)
    )
    if friend_code is None:
        return None
    referrer = session.get(Member, friend_code.referrer_id)
    if referrer is None or referrer.erased_at is not None:
        return None
    if referee.referred_by_id is None and referrer.id != referee.id:
        referee.referred_by_id = referrer.id
        referee.updated_at = now
    referral = Referral(
        referrer_id=referrer.id,
        referee_id=referee.id,
        code=referrer.referral_code,
        status=ReferralStatus.PENDING,
        created_at=now,
    )
    session.add(referral)
    session.flush()
    return referral


def _party(member: Member, orders: Iterable[dict[str, object]]) -> Party:
    ips, addresses = set(), set()
    for payload in orders:
        if isinstance(ip := payload.get("browser_ip"), str) and ip:
            ips.add(ip)
        if isinstance(address := payload.get("shipping_address_hash"), str) and address:
            addresses.add(address)
    return Party(member.id, member.email, member.phone, frozenset(ips), frozenset(addresses))


def _order_payloads(session: Session, member_id: int, *, exclude: int) -> list[dict[str, object]]:
    return list(
        session.scalars(
            select(Event.payload)
            .where(
                Event.member_id == member_id,
                Event.type == "order.completed",
                Event.id != exclude,
            )
            .order_by(Event.id.desc())
            .limit(KNOWN_ORDERS)
        )
    )


def _velocity(
    session: Session, referral: Referral, ordered_at: datetime, settings: Settings
) -> Velocity:
    def since(window: timedelta) -> int:
        count = session.scalar(
            select(func.count(Referral.id)).where(
                Referral.referrer_id == referral.referrer_id,
                Referral.id != referral.id,
                Referral.status.in_(_ORDERED),
                Referral.ordered_at > ordered_at - window,
                Referral.ordered_at <= ordered_at,
            )
        )
        return int(count or 0)

    return Velocity(
        last_day=since(timedelta(days=1)),
        last_week=since(timedelta(days=7)),
        max_per_day=settings.referral_max_per_day,
        max_per_week=settings.referral_max_per_week,
    )


def payout_event(session: Session, referral: Referral) -> EventInput:
    """`referral.completed` for the referrer: the event the referral journeys reward."""
    referrer = session.get(Member, referral.referrer_id)
    referee = session.get(Member, referral.referee_id)
    assert referrer is not None and referee is not None
    return EventInput(
        type="referral.completed",
        member=referrer.external_id,
        id=f"referral:{referral.id}",
        data={
            "referee": referee.external_id,
            "referee_first_name": referee.first_name,
            "order_id": referral.order_id,
            # A flagged referral is paid only once a person approved it.
            "fraud_verdict": "approved" if referral.reasons else "clean",
        },
        source=INTERNAL_SOURCE,
    )


def void_on_refund(
    session: Session, referee: Member, order_id: str, *, fully: bool, now: datetime
) -> Referral | None:
    """A full refund of the referee's first order voids its unpaid referral (claw-back).

    A partial refund leaves it held: the order stands. A paid referral stays paid.
    """
    if not fully:
        return None
    referral = session.scalar(
        select(Referral).where(
            Referral.referee_id == referee.id,
            Referral.order_id == order_id,
            Referral.status.in_((ReferralStatus.HELD, ReferralStatus.REVIEW)),
        )
    )
    if referral is None:
        return None
    referral.status = ReferralStatus.REJECTED
    referral.reviewed_at = now
    referral.review_note = f"order {order_id} refunded: nothing paid"
    return referral

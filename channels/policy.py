"""The contact policy, checked when a message is claimed for sending (DESIGN §9).

In order: erased → consent for the channel and purpose → suppression →
quiet hours in the member's zone (defer) → frequency caps across journeys →
send. Transactional messages skip consent and caps, never quiet hours.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from sqlalchemy import Row, bindparam, func, select
from sqlalchemy.orm import Session

from channels.quiet_hours import parse_quiet_hours, quiet_until
from loyalty.db import among
from loyalty.members import MemberRow
from loyalty.models import Message, Suppression
from loyalty.settings import Settings
from loyalty.states import POSSIBLY_SENT, MessageState

__all__ = ["SEND", "Decision", "Known", "MessageRow", "address_of", "check", "known_for"]

#: States that count against a frequency cap: sent, or possibly sent, or going out now.
_COUNTED = (*POSSIBLY_SENT, MessageState.CLAIMED)

#: A message as sending reads it: the ORM object, or a Core row of the `messages` columns
#: (a batch of emails is claimed without building objects).
MessageRow = Message | Row[*tuple[Any, ...]]

#: The verdict that lets a message go.
SEND: Final = "send"


@dataclass(frozen=True)
class Decision:
    #: SEND, or the state the message takes instead: suppressed, deferred or failed.
    verdict: Literal["send"] | MessageState
    reason: str | None = None
    until: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict == SEND


def address_of(member: MemberRow, channel: str) -> str | None:
    return member.email if channel == "email" else member.phone


def _quiet_hours(channel: str, policy: dict[str, Any], settings: Settings) -> str | None:
    override = policy.get("quiet_hours")
    if override:
        return f"{override['start'][:5]}-{override['end'][:5]}"
    return settings.sms_quiet_hours if channel == "sms" else settings.email_quiet_hours


def _cap(channel: str, policy: dict[str, Any], settings: Settings) -> tuple[int, timedelta]:
    if channel == "sms":
        limit = policy.get("max_sms_per_day")
        return (settings.max_marketing_sms_per_day if limit is None else limit), _WINDOWS["sms"]
    limit = policy.get("max_emails_per_week")
    return (settings.max_marketing_emails_per_week if limit is None else limit), _WINDOWS["email"]


#: How far back each channel's frequency cap counts.
_WINDOWS = {"sms": timedelta(days=1), "email": timedelta(days=7)}


@dataclass(frozen=True)
class Known:
    """The suppressions and capped sends of a batch's members, read once for the batch."""

    #: (channel, lower-case address) → the suppression's reason.
    suppressions: dict[tuple[str, str], str]
    #: (member id, channel) → marketing messages counted by the frequency cap.
    recent: dict[tuple[int, str], int]


# A batch's two reads, built once (the members and addresses go as parameters).
#: The suppressions of some addresses on a channel.
_SUPPRESSIONS = select(Suppression.address, Suppression.reason).where(
    Suppression.channel == bindparam("channel"), among(Suppression.address, "addresses")
)
#: Some members' marketing messages on a channel that count against their caps since then.
_RECENT_OF = (
    select(Message.member_id, func.count(Message.id))
    .where(
        among(Message.member_id, "member_ids"),
        Message.channel == bindparam("channel"),
        Message.purpose == "marketing",
        Message.state.in_(_COUNTED),
        func.coalesce(Message.sent_at, Message.updated_at)
        > bindparam("since", type_=Message.updated_at.type),
    )
    .group_by(Message.member_id)
)


def known_for(
    session: Session, members: Collection[MemberRow], channel: str, *, now: datetime
) -> Known:
    """`Known` for `members` on `channel`, in two queries whatever their number.

    The batch's own messages are pending while it is read, so no cap counts them.
    """
    addresses = sorted({a.lower() for m in members if (a := address_of(m, channel))})
    suppressions = {
        (channel, address): reason
        for address, reason in session.execute(
            _SUPPRESSIONS, {"channel": channel, "addresses": addresses}
        )
    }
    values = {
        "member_ids": [m.id for m in members],
        "channel": channel,
        "since": now - _WINDOWS[channel],
    }
    recent = {
        (member_id, channel): int(count) for member_id, count in session.execute(_RECENT_OF, values)
    }
    return Known(suppressions, recent)


# A single message's two reads, built once (a batch reads them with `known_for`).
#: The reason an address is suppressed on a channel.
_SUPPRESSION = select(Suppression.reason).where(
    Suppression.channel == bindparam("channel"), Suppression.address == bindparam("address")
)
#: A member's other marketing messages on a channel that count against its cap since then.
_RECENT = select(func.count(Message.id)).where(
    Message.member_id == bindparam("member_id"),
    Message.channel == bindparam("channel"),
    Message.purpose == "marketing",
    Message.state.in_(_COUNTED),
    Message.id != bindparam("message_id"),
    func.coalesce(Message.sent_at, Message.updated_at) > bindparam("since"),
)


def check(
    session: Session,
    member: MemberRow,
    message: MessageRow,
    *,
    settings: Settings,
    now: datetime,
    zone: str,
    pending: int = 0,
    known: Known | None = None,
) -> Decision:
    """Whether `message` may go to `member` now; the first rule that says no, says why.

    `pending` counts the member's messages claimed by the caller but not yet stored;
    `known` is what the caller read for its whole batch (`known_for`), else it is read here.
    """
    channel = message.channel
    transactional = message.purpose == "transactional"
    policy: dict[str, Any] = message.decisions.get("policy") or {}
    if member.erased_at is not None:
        return Decision(MessageState.SUPPRESSED, "erased")
    address = address_of(member, channel)
    if not address:
        return Decision(MessageState.FAILED, "no_email" if channel == "email" else "no_phone")
    if not transactional and getattr(member, f"{channel}_consent") is not True:
        return Decision(MessageState.SUPPRESSED, "no_consent")
    if known is not None:
        suppressed = known.suppressions.get((channel, address.lower()))
    else:
        suppressed = session.scalar(_SUPPRESSION, {"channel": channel, "address": address.lower()})
    if suppressed is not None:
        return Decision(MessageState.SUPPRESSED, suppressed)
    until = quiet_until(now, zone, parse_quiet_hours(_quiet_hours(channel, policy, settings)))
    if until is not None:
        return Decision(MessageState.DEFERRED, "quiet_hours", until)
    if not transactional and policy.get("frequency_cap") is not False:
        limit, window = _cap(channel, policy, settings)
        recent: int | None
        if known is not None:
            recent = known.recent.get((member.id, channel), 0)
        else:
            recent = session.scalar(
                _RECENT,
                {
                    "member_id": member.id,
                    "channel": channel,
                    "message_id": message.id,
                    "since": now - window,
                },
            )
        if (recent or 0) + pending >= limit:
            return Decision(MessageState.SUPPRESSED, "frequency_cap")
    return Decision(SEND)

"""The outbox as people read it: messages with their state and every decision about them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from loyalty.models import Member, Message

__all__ = ["find_message", "list_messages", "message_view"]


def _with_member() -> Select[Message, str]:
    return select(Message, Member.external_id).join(Member, Member.id == Message.member_id)


def list_messages(
    session: Session,
    *,
    state: str | None = None,
    channel: str | None = None,
    external_id: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The newest messages first, filtered by state, channel and member."""
    query = _with_member().order_by(Message.id.desc()).limit(limit)
    if state:
        query = query.where(Message.state == state)
    if channel:
        query = query.where(Message.channel == channel)
    if external_id:
        query = query.where(Member.external_id == external_id)
    return [message_view(message, member) for message, member in session.execute(query)]


def find_message(session: Session, message_id: int) -> dict[str, Any] | None:
    """One message as `message_view` shows it, or None."""
    found = session.execute(_with_member().where(Message.id == message_id)).first()
    return None if found is None else message_view(*found)


def message_view(message: Message, member: str) -> dict[str, Any]:
    """A message as plain JSON data."""
    return {
        "id": message.id,
        "created_at": message.created_at.isoformat(),
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "channel": message.channel,
        "purpose": message.purpose,
        "state": message.state,
        "member": member,
        "journey": message.journey_id,
        "step": message.step_id,
        "template": message.template,
        "locale": message.locale,
        "provider_id": message.provider_id,
        "provider_status": message.provider_status,
        "attempts": message.attempts,
        "segments": message.segments,
        "cost": str(message.cost) if message.cost is not None else None,
        "error": message.error,
        "decisions": message.decisions,
    }

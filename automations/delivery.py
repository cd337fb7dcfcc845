"""Delivering queued messages: claim, check the contact policy, render, send, record.

Until provider credentials are configured, "send" writes to the local outbox.
The data a template sees is built here, when the message goes out, so amounts
such as expiring points are the ledger's at sending time.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from automations.versions import load_version
from channels import outbox, policy
from channels.render import Rendered, RenderError, locale_chain, render_message
from channels.segments import measure
from loyalty.app import App
from loyalty.members import member_data
from loyalty.models import Enrollment, JourneyVersion, Member, Message

__all__ = ["deliver", "render_for", "template_data"]

log = logging.getLogger(__name__)


def deliver(app: App, message_id: int) -> str | None:
    """Deliver one message if it is still pending; returns its new state."""
    now = app.clock.now()
    with app.database.transaction() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None or message.state != "pending" or message.channel == "crm":
            return None
        message.attempts += 1
        message.updated_at = now
        member = session.get(Member, message.member_id)
        assert member is not None
        decision = policy.check(
            session, member, message.channel, transactional=message.purpose == "transactional"
        )
        message.decisions = {**message.decisions, "policy": decision.reason or "send"}
        if not decision.allowed:
            message.state = decision.verdict
            message.error = decision.reason
            return message.state
        try:
            rendered = render_for(session, app, message, member, now)
        except RenderError as exc:
            message.state, message.error = "failed", f"render: {exc}"
            log.warning("message.render_failed", extra={"message_id": message.id})
            return message.state
        message.locale = rendered.locale
        if message.channel == "sms":
            size = measure(rendered.body)
            message.segments = size.segments
            message.cost = size.cost(app.settings.sms_price_per_segment)
            limit = message.decisions.get("max_segments")
            if limit and size.segments > limit:
                message.state = "failed"
                message.error = f"too_many_segments: {size.segments} > {limit} ({size.encoding})"
                return message.state
        message.provider_id = _write(app, message, member, rendered, now)
        message.state = "sent"
        message.sent_at = now
        return message.state


def _write(app: App, message: Message, member: Member, rendered: Rendered, now: datetime) -> str:
    folder = app.settings.outbox_dir
    if message.channel == "sms":
        path = outbox.write_sms(
            folder,
            message.id,
            rendered,
            to=member.phone or "",
            sent_at=now,
            segments=message.segments,
            member=member.external_id,
        )
        return path.name
    headers = {"X-Loyalty-Message-Id": str(message.id)}
    if message.purpose == "marketing":
        url = _unsubscribe_url(app, message)
        headers["List-Unsubscribe"] = f"<{url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    path = outbox.write_email(
        folder,
        message.id,
        rendered,
        to=member.email or "",
        sender=app.settings.email_from or "loyalty@localhost",
        sent_at=now,
        headers=headers,
    )
    return path.name


def _unsubscribe_url(app: App, message: Message) -> str:
    token = message.decisions.get("unsubscribe_token", "")
    return f"{app.settings.public_base_url.rstrip('/')}/u/{token}"


def render_for(
    session: Session, app: App, message: Message, member: Member, now: datetime
) -> Rendered:
    """Render the message with the data its template may use (the variable contract)."""
    enrollment = session.get(Enrollment, message.enrollment_id) if message.enrollment_id else None
    if enrollment is None or message.template is None:
        raise RenderError("the message has no enrollment or template to render")
    version = session.get(JourneyVersion, enrollment.journey_version_id)
    assert version is not None
    published = load_version(version)
    data = render_data(session, app, message, member, enrollment, published.journey, now)
    chain = locale_chain(member.locale or app.settings.default_locale, published.journey.locale)
    return render_message(published.templates, message.template, message.channel, chain, data)


def render_data(
    session: Session,
    app: App,
    message: Message,
    member: Member,
    enrollment: Enrollment,
    journey: Any,
    now: datetime,
) -> dict[str, Any]:
    fields = member_data(session, member, now=now, public_base_url=app.settings.public_base_url)
    survey = message.decisions.get("survey")
    base = app.settings.public_base_url.rstrip("/")
    return template_data(
        fields,
        journey,
        enrollment.context,
        unsubscribe_url=_unsubscribe_url(app, message),
        survey_url=f"{base}/s/{survey['token']}" if survey else None,
    )


def template_data(
    member_fields: dict[str, Any],
    journey: Any,
    context: dict[str, Any],
    *,
    unsubscribe_url: str,
    survey_url: str | None,
) -> dict[str, Any]:
    """The variables a template sees (the contract of automations.definition.variables)."""
    data: dict[str, Any] = {
        "member": member_fields,
        "journey": {"id": journey.id, "name": journey.name},
        "occurrence": context.get("occurrence"),
        "event": context.get("event") or {},
        "points_expiring": member_fields["points_expiring"],
        "points_expiring_at": member_fields["points_expiring_at"],
        "award": context.get("award") or {"points": 0, "expires_at": None},
        "unsubscribe_url": unsubscribe_url,
    }
    if survey_url:
        data["survey_url"] = survey_url
    return data

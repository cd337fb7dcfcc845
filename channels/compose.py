"""What a message says: rendered with the member's data of that moment, with what the law
asks of marketing messages (unsubscribe link, postal address, SMS opt-out wording) and the
email headers of one-click unsubscribe (RFC 8058).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from channels.policy import MessageRow
from channels.render import Rendered, RenderError, locale_chain, render_message
from channels.system_texts import system_texts
from channels.template_data import StoredJourney, stored_journeys, template_data
from loyalty.app import App
from loyalty.members import MemberRow, member_data
from loyalty.models import Enrollment, Message
from loyalty.states import POSSIBLY_SENT

__all__ = [
    "EnrollmentRow",
    "message_headers",
    "render_data",
    "render_for",
    "tier_name",
    "with_compliance",
]


def with_compliance(
    session: Session, app: App, message: MessageRow, rendered: Rendered
) -> Rendered:
    """What the law asks of marketing messages, added where the template left it out.

    Email: a visible unsubscribe link and the postal address (CAN-SPAM, RFC 8058
    headers are added separately). SMS: opt-out wording on the first contact. Both in the
    message's language (`channels.system_texts`: ``email.unsubscribe``, ``sms.opt_out``).
    """
    texts = system_texts(
        app.settings.journeys_dir / "templates", rendered.locale, app.settings.default_locale
    )
    program = app.settings.program_name
    if message.channel == "sms":
        if "STOP" in rendered.body.upper():
            return rendered
        earlier = session.scalar(
            select(Message.id)
            .where(
                Message.member_id == message.member_id,
                Message.channel == "sms",
                Message.state.in_(POSSIBLY_SENT),
                Message.id != message.id,
            )
            .limit(1)
        )
        if earlier is not None:
            return rendered
        opt_out = texts("sms.opt_out", program=program)
        return replace(rendered, body=f"{rendered.body} {opt_out}")
    url = _unsubscribe_url(app, message)
    html_parts, text_parts = [], []
    if url not in rendered.body:
        label = texts("email.unsubscribe", program=program)
        html_parts.append(f'<a href="{html.escape(url)}">{html.escape(label)}</a>')
        text_parts.append(f"{label}: {url}")
    address = app.settings.postal_address
    if address and address not in rendered.body:
        html_parts.append(html.escape(address))
        text_parts.append(address)
    if not html_parts:
        return rendered
    footer = '<p style="font-size:12px;color:#666">' + " · ".join(html_parts) + "</p>"
    return replace(
        rendered,
        body=rendered.body + footer,
        text=(rendered.text or "") + "\n" + "\n".join(text_parts) + "\n",
    )


def message_headers(app: App, message: MessageRow) -> dict[str, str]:
    headers = {"X-Loyalty-Message-Id": str(message.id)}
    if message.purpose == "marketing":
        headers["List-Unsubscribe"] = f"<{_unsubscribe_url(app, message)}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def _unsubscribe_url(app: App, message: MessageRow) -> str:
    token = message.unsubscribe_token or ""
    return f"{app.settings.public_base_url.rstrip('/')}/u/{token}"


#: An enrollment as rendering reads it (its version and context): the ORM object, or a Core
#: row of those columns.
EnrollmentRow = Enrollment | Row[*tuple[Any, ...]]


def render_for(
    session: Session,
    app: App,
    message: MessageRow,
    member: MemberRow,
    now: datetime,
    *,
    journeys: Mapping[int, StoredJourney] | None = None,
    fields: dict[str, Any] | None = None,
    enrollments: Mapping[int, EnrollmentRow] | None = None,
) -> Rendered:
    """Render the message with the data its template may use (the variable contract).

    A batch passes what it read for all its messages: the stored journeys by version id,
    the member's data (`member_data`) and the enrollments by id; otherwise they are read
    here.
    """
    enrollment: EnrollmentRow | None = None
    if message.enrollment_id is not None:
        if enrollments is not None:
            enrollment = enrollments.get(message.enrollment_id)
        else:
            enrollment = session.get(Enrollment, message.enrollment_id)
    template_id = message.decisions.get("template_id")
    if enrollment is None or (message.template is None and not template_id):
        raise RenderError("the message has no enrollment or template to render")
    version_id = enrollment.journey_version_id
    journey = (journeys or stored_journeys(session, [version_id]))[version_id]
    data = render_data(session, app, message, member, enrollment, journey, now, fields)
    chain = locale_chain(member.locale or app.settings.default_locale, journey.locale)
    if message.template is None:
        # SendGrid renders a dynamic template itself, from the same data ours would see.
        return Rendered("email", chain[0], "", data=_plain(data))
    return render_message(journey.templates, message.template, message.channel, chain, data)


def _plain(value: Any) -> Any:
    """JSON-ready: datetimes as ISO 8601, money as text."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def render_data(
    session: Session,
    app: App,
    message: MessageRow,
    member: MemberRow,
    enrollment: EnrollmentRow,
    journey: StoredJourney,
    now: datetime,
    fields: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if fields is None:
        fields = member_data(
            session,
            member,
            now=now,
            public_base_url=app.settings.public_base_url,
            default_zone=app.settings.default_time_zone,
        )
    survey = message.decisions.get("survey")
    base = app.settings.public_base_url.rstrip("/")
    chain = locale_chain(member.locale or app.settings.default_locale, journey.locale)
    key = f"{message.template}.{message.channel}"
    locale = next((x for x in chain if f"{x}/{key}" in journey.templates), chain[0])
    return template_data(
        fields,
        journey,
        enrollment.context,
        unsubscribe_url=_unsubscribe_url(app, message),
        survey_url=f"{base}/s/{survey['token']}" if survey else None,
        tier_name=tier_name(app, member.tier, locale),
    )


def tier_name(app: App, tier: str, locale: str) -> str:
    """The name of ``tier`` in ``locale`` (``tiers.<tier>`` of the system texts)."""
    templates = app.settings.journeys_dir / "templates"
    return system_texts(templates, locale, app.settings.default_locale).tier(tier)

"""Previews: what one member would get from a journey's send steps, and the data used.

The journey is read from its file as it is now (drafts included), so marketers
see an edit before they publish it. Nothing is stored or sent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from automations.definition import (
    AwardPoints,
    EventTrigger,
    Program,
    SendEmail,
    SendSms,
    SendSurvey,
    load_journeys,
)
from automations.versions import templates_of
from channels.render import RenderError, locale_chain, render_message
from channels.segments import measure
from channels.template_data import template_data
from loyalty.app import App
from loyalty.members import get_member, member_data, member_zone
from loyalty.models import Event

__all__ = ["preview"]


def preview(
    app: App, journey_id: str, external_id: str, step_id: str | None = None
) -> list[dict[str, Any]]:
    folder = app.settings.journeys_dir
    program = Program.from_settings(app.settings)
    files, _ = load_journeys([folder], folder / "templates", program=program)
    found = [f for f in files if f.journey.id == journey_id]
    if not found:
        raise LookupError(
            f"no valid journey {journey_id!r} in {folder}; see `loyalty journeys validate`"
        )
    journey_file = found[0]
    journey = journey_file.journey
    templates = templates_of(journey_file, folder / "templates")
    now = app.clock.now()
    with app.database.sessions() as session:
        member = get_member(session, external_id)
        fields = member_data(
            session,
            member,
            now=now,
            public_base_url=app.settings.public_base_url,
            default_zone=app.settings.default_time_zone,
        )
        context: dict[str, Any] = {"occurrence": now.date().isoformat()}
        trigger = journey.trigger
        if isinstance(trigger, EventTrigger):
            payload = session.scalar(
                select(Event.payload)
                .where(Event.member_id == member.id, Event.type == trigger.event)
                .order_by(Event.occurred_at.desc())
                .limit(1)
            )
            context["event"] = payload or {}
        award = next((s for s in journey.steps if isinstance(s, AwardPoints)), None)
        if award is not None:
            expiry = award.expires_in or timedelta(days=app.settings.points_expiry_days)
            context["award"] = {
                "points": award.points_for(member.tier),
                "expires_at": (now + expiry).isoformat(),
            }
        chain = locale_chain(member.locale or app.settings.default_locale, journey.locale)
        zone = member_zone(member, app.settings)
    base = app.settings.public_base_url.rstrip("/")
    out: list[dict[str, Any]] = []
    for step in journey.steps:
        if not isinstance(step, SendEmail | SendSms | SendSurvey) or step.template is None:
            continue
        if step_id is not None and step.id != step_id:
            continue
        channel = (
            step.channel
            if isinstance(step, SendSurvey)
            else ("email" if isinstance(step, SendEmail) else "sms")
        )
        data = template_data(
            fields,
            journey,
            context,
            unsubscribe_url=f"{base}/u/PREVIEW",
            survey_url=f"{base}/s/PREVIEW" if isinstance(step, SendSurvey) else None,
        )
        item: dict[str, Any] = {"step": step.id, "channel": channel, "zone": zone, "data": data}
        try:
            rendered = render_message(templates, step.template, channel, chain, data)
        except RenderError as exc:
            item["error"] = str(exc)
            out.append(item)
            continue
        item.update(locale=rendered.locale, body=rendered.body)
        if channel == "email":
            item.update(subject=rendered.subject, preheader=rendered.preheader, text=rendered.text)
        else:
            size = measure(rendered.body)
            item.update(
                segments=size.segments,
                encoding=size.encoding,
                cost=str(size.cost(app.settings.sms_price_per_segment)),
            )
        out.append(item)
    if step_id is not None and not out:
        raise LookupError(f"journey {journey_id!r} has no send step {step_id!r}")
    return out

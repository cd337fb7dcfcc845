"""Previews: what one member would get from a journey's send steps, and the data used.

The journey is read from its file as it is now (drafts included), so marketers
see an edit before they publish it. The member must be one the journey would
take: its audience, and for an event trigger its conditions, are judged on the
member and the event (one given, else the member's latest of that type).
Nothing is stored or sent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from automations.definition import (
    AwardPoints,
    Context,
    EventTrigger,
    Program,
    SendEmail,
    SendSms,
    SendSurvey,
    evaluate,
    load_journeys,
)
from automations.enrollments import count_events_for
from automations.versions import templates_of
from channels.compose import tier_name
from channels.engagement import engagement_counter
from channels.render import RenderError, locale_chain, render_message
from channels.segments import measure
from channels.template_data import template_data
from loyalty.app import App
from loyalty.members import get_member, member_data, member_zone
from loyalty.models import Event

__all__ = ["OutsideAudience", "preview"]


class OutsideAudience(Exception):
    """The journey would not take this member: nothing would be sent to preview."""


def preview(
    app: App,
    journey_id: str,
    external_id: str,
    step_id: str | None = None,
    *,
    event: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Each send step of the journey rendered for the member, with the data it used.

    `event` is the triggering event's data (or a whole event: `type` and `data`);
    raises OutsideAudience when the audience or the trigger's conditions leave the
    member out.
    """
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
        payload = _event_data(journey_id, trigger, event)
        if payload is None and isinstance(trigger, EventTrigger):
            payload = session.scalar(
                select(Event.payload)
                .where(Event.member_id == member.id, Event.type == trigger.event)
                .order_by(Event.occurred_at.desc())
                .limit(1)
            )
        if payload is not None or isinstance(trigger, EventTrigger):
            context["event"] = payload or {}
        judged = Context(
            member=fields,
            now=now,
            event=context.get("event"),
            count_events=count_events_for(session, member.id),
            count_engagements=engagement_counter(session, member.id),
            tiers=tuple(app.settings.tier_thresholds),
        )
        if journey.audience is not None and not evaluate(journey.audience, judged):
            raise OutsideAudience(
                f"member {external_id} is outside the audience of journey {journey_id!r}; "
                "nothing would be sent"
            )
        if (
            isinstance(trigger, EventTrigger)
            and trigger.conditions is not None
            and not evaluate(trigger.conditions, judged)
        ):
            raise OutsideAudience(
                f"this {trigger.event} event does not meet the trigger's conditions of "
                f"journey {journey_id!r} for member {external_id}; nothing would be sent"
            )
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
            tier_name=tier_name(
                app, member.tier, _template_locale(templates, step, channel, chain)
            ),
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


def _event_data(
    journey_id: str, trigger: object, event: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The event's data from `--event`: its data object, or a whole event's `data`."""
    if event is None:
        return None
    if "type" in event and isinstance(event.get("data"), dict):
        expected = trigger.event if isinstance(trigger, EventTrigger) else None
        if expected is not None and event["type"] != expected:
            raise LookupError(
                f"journey {journey_id!r} starts on {expected} events, not {event['type']}"
            )
        data: dict[str, Any] = event["data"]
        return data
    return event


def _template_locale(templates: dict[str, str], step: Any, channel: str, chain: list[str]) -> str:
    """The locale whose template the member gets (the first of ``chain`` that has it)."""
    key = f"{step.template}.{channel}"
    return next((x for x in chain if f"{x}/{key}" in templates), chain[0])

"""Running enrollments: each step's outcome applied in one transaction.

The business keys make every step safe to repeat: points under
`enrollment:<id>:<step>`, messages under the same key, and the enrollment row
itself locked and compared before it moves.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic_core import to_jsonable_python
from sqlalchemy.orm import Session

from automations.definition import END
from automations.engine import (
    Award,
    CrmUpdate,
    FollowUpTask,
    HttpRequest,
    Outcome,
    Send,
    StepState,
    decide,
)
from automations.enrollments import count_events_for
from automations.step_messages import kept_together
from automations.versions import Published, published_version
from channels.engagement import engagement_counter
from channels.render import RenderError, render_text
from channels.template_data import template_data
from loyalty import ledger
from loyalty.app import App
from loyalty.db import insert_ignore, insert_ignore_returning
from loyalty.members import LazyMemberData, member_zone
from loyalty.models import Enrollment, Event, Member, Message, SplitChoice, Survey
from loyalty.settings import Settings
from loyalty.states import EnrollmentState, LedgerKind, MessageState
from loyalty.step_counts import count_entered

__all__ = ["Ran", "run_enrollment", "run_steps"]

log = logging.getLogger(__name__)

#: Steps one call may run before handing the rest to a new message (a guard, not a limit).
MAX_STEPS_PER_RUN = 100


@dataclass
class Ran:
    """What a run left to queue: messages to deliver, and events its steps caused."""

    messages: list[int] = field(default_factory=list)
    #: `points.changed` / `tier.changed` of the points its steps awarded.
    events: list[int] = field(default_factory=list)
    #: When the enrollment, now waiting, is due to run again.
    wake_at: datetime | None = None


def run_enrollment(app: App, enrollment_id: int) -> Ran:
    """Run the enrollment until it waits or ends; returns what to queue."""
    ran = Ran()
    for _ in range(MAX_STEPS_PER_RUN):
        with app.database.transaction() as session:
            progressed = _step(session, app, enrollment_id, ran.messages)
            caused = ledger.take_emitted(session)
            ran.wake_at = _wake_at(session, enrollment_id)
        ran.events += caused
        if not progressed:
            break
    return ran


def run_steps(
    session: Session, app: App, enrollment_id: int, ran: Ran, *, locked: bool = False
) -> None:
    """Run the enrollment until it waits or ends, all in `session` (a batch's transaction);
    `locked`: the session already holds the enrollment's and its member's rows."""
    for _ in range(MAX_STEPS_PER_RUN):
        if not _step(session, app, enrollment_id, ran.messages, locked=locked):
            break
    ran.events += ledger.take_emitted(session)
    ran.wake_at = _wake_at(session, enrollment_id)


def _wake_at(session: Session, enrollment_id: int) -> datetime | None:
    """When the enrollment, if it now waits, is due to run again."""
    enrollment = session.get(Enrollment, enrollment_id)
    if enrollment is None or enrollment.state != EnrollmentState.WAITING:
        return None
    return enrollment.next_run_at


def _step(
    session: Session, app: App, enrollment_id: int, messages: list[int], *, locked: bool = False
) -> bool:
    """Run one step; False when there is nothing (more) to do now."""
    now = app.clock.now()
    enrollment = session.get(Enrollment, enrollment_id, with_for_update=None if locked else True)
    if enrollment is None:
        return False
    if enrollment.state == EnrollmentState.WAITING:
        if enrollment.next_run_at is None or enrollment.next_run_at > now:
            return False
        waited_at = enrollment.current_step
        _wake(enrollment)
        if enrollment.current_step == END:
            # A holdout waited out the goal window: it leaves from its split, as the control.
            reason = enrollment.context.get("exit_reason")
            if reason:
                enrollment.current_step = waited_at
            ended = EnrollmentState.EXITED if reason else EnrollmentState.COMPLETED
            _finish(enrollment, now, ended, reason)
            return False
    if enrollment.state != EnrollmentState.ACTIVE or enrollment.current_step is None:
        return False
    if enrollment.current_step == END:  # a wait's branch may point straight at the end
        _finish(enrollment, now, EnrollmentState.COMPLETED, None)
        return False
    published = published_version(session, enrollment.journey_version_id)
    assert published is not None
    held = session.get(Member, enrollment.member_id) if locked else None
    member = held or ledger.lock_member(session, enrollment.member_id)
    if member.erased_at is not None:
        _finish(enrollment, now, EnrollmentState.EXITED, "erased")
        return False
    state = StepState(
        # Read beyond the member's row only if the step asks (a send step does not).
        member=LazyMemberData(
            session,
            member,
            now=now,
            public_base_url=app.settings.public_base_url,
            default_zone=app.settings.default_time_zone,
        ),
        zone=member_zone(member, app.settings),
        now=now,
        event=enrollment.context.get("event"),
        count_events=count_events_for(session, member.id),
        tiers=tuple(app.settings.tier_thresholds),
        default_expiry_days=app.settings.points_expiry_days,
        count_engagements=engagement_counter(session, member.id),
        entered_at=enrollment.entered_at,
    )
    outcome = decide(published.journey, enrollment.current_step, state)
    count_entered(session, enrollment.journey_id, outcome.step, enrollment.id)
    _apply(
        session,
        app.settings,
        enrollment,
        member,
        published,
        outcome,
        now,
        messages,
        state.member,
    )
    if outcome.note.get("variant"):
        _chose(session, enrollment, outcome.step, str(outcome.note["variant"]))
    if outcome.wake_at is not None:
        context = {**enrollment.context, "resume": outcome.note.get("resume")}
        context["waiting_for"] = outcome.waiting_for
        if outcome.exit_reason:
            context["exit_reason"] = outcome.exit_reason
        enrollment.context = context
        enrollment.state = EnrollmentState.WAITING
        enrollment.next_run_at = outcome.wake_at
        return False
    if outcome.next_step == END or outcome.next_step is None:
        ended = EnrollmentState.EXITED if outcome.exit_reason else EnrollmentState.COMPLETED
        _finish(enrollment, now, ended, outcome.exit_reason)
        return False
    enrollment.current_step = outcome.next_step
    return True


def _chose(session: Session, enrollment: Enrollment, split_id: str, variant: str) -> None:
    """Record the variant the enrollment got at this split (the first split's stays on the
    enrollment too, as reports before per-split choices read it)."""
    if enrollment.variant is None:
        enrollment.variant = variant
    row = {
        "enrollment_id": enrollment.id,
        "split_id": split_id,
        "journey_id": enrollment.journey_id,
        "variant": variant[:64],
    }
    insert_ignore(session, SplitChoice, [row], ["enrollment_id", "split_id"])


def _wake(enrollment: Enrollment) -> None:
    context = dict(enrollment.context)
    waiting = context.pop("waiting_for", None)
    resume = context.pop("resume", None)
    enrollment.current_step = waiting["on_timeout"] if waiting else resume
    if waiting:
        context["timed_out"] = True
    enrollment.context = context
    enrollment.state = EnrollmentState.ACTIVE
    enrollment.next_run_at = None


def _finish(
    enrollment: Enrollment, now: datetime, state: EnrollmentState, reason: str | None
) -> None:
    enrollment.state = state
    enrollment.exited_at = now
    enrollment.exit_reason = reason
    enrollment.next_run_at = None


def _apply(
    session: Session,
    settings: Settings,
    enrollment: Enrollment,
    member: Member,
    published: Published,
    outcome: Outcome,
    now: datetime,
    messages: list[int],
    member_fields: Mapping[str, Any],
) -> None:
    key = f"enrollment:{enrollment.id}:{outcome.step}"
    for action in outcome.actions:
        if isinstance(action, Award):
            posting = ledger.apply(
                session,
                member,
                LedgerKind.BONUS,
                action.points,
                key=key,
                reason=action.reason,
                now=now,
                thresholds=settings.tier_thresholds,
                expires_at=action.expires_at,
            )
            enrollment.context = {
                **enrollment.context,
                "award": {
                    "points": posting.entry.delta,
                    "expires_at": (
                        posting.entry.expires_at.isoformat() if posting.entry.expires_at else None
                    ),
                },
            }
        elif isinstance(action, Send):
            journey_policy = published.journey.policy
            merged = {
                **(
                    journey_policy.model_dump(mode="json", exclude_none=True)
                    if journey_policy
                    else {}
                ),
                **{k: v for k, v in (action.policy or {}).items() if v is not None},
            }
            action = replace(action, policy=merged or None)
            message_id = _queue(session, enrollment, member, outcome.step, action, key, now)
            if message_id is not None:
                messages.append(message_id)
        elif isinstance(action, CrmUpdate):
            properties = _render_properties(action.properties, member_fields, published, enrollment)
            update = CrmUpdate(properties)
            _queue_crm(session, enrollment, member, outcome.step, update, key, now)
        elif isinstance(action, HttpRequest):
            body = _http_body(action, key, outcome.step, member_fields, published)
            body["data"] = _render_properties(action.data, member_fields, published, enrollment)
            if action.include_event:
                body["event"] = _event_of(session, enrollment)
            decisions = {"endpoint": action.endpoint, "body": _canonical_json(body, now)}
            row = _outbox_row(
                enrollment,
                member,
                outcome.step,
                key,
                now,
                channel="http",
                purpose="transactional",
                template=None,
                decisions=decisions,
            )
            message_id = _insert_outbox(session, row)
            if message_id is not None:
                messages.append(message_id)
        elif isinstance(action, FollowUpTask):
            zone = member_zone(member, settings)
            texts = _render_properties(
                {"subject": action.subject, "body": action.body or ""},
                member_fields,
                published,
                enrollment,
            )
            task = {
                "subject": (texts["subject"] or action.subject)[:255],
                "body": texts["body"] or "",
                "due_at": action.due_at.isoformat(),
                "due_date": action.due_at.astimezone(ZoneInfo(zone)).date().isoformat(),
                "priority": action.priority,
                "owners": action.owners,
            }
            row = _outbox_row(
                enrollment,
                member,
                outcome.step,
                key,
                now,
                channel="crm_task",
                purpose="transactional",
                template=None,
                decisions={"task": task, "crms": list(action.crms)},
            )
            message_id = _insert_outbox(session, row)
            if message_id is not None:
                messages.append(message_id)
    if outcome.note:
        notes = dict(enrollment.context.get("notes", {}))
        notes[outcome.step] = outcome.note
        enrollment.context = {**enrollment.context, "notes": notes}


def _queue(
    session: Session,
    enrollment: Enrollment,
    member: Member,
    step: str,
    send: Send,
    key: str,
    now: datetime,
) -> int | None:
    decisions: dict[str, Any] = {}
    if send.max_segments:
        decisions["max_segments"] = send.max_segments
    if send.template_id:
        decisions["template_id"] = send.template_id
    if send.policy:
        decisions["policy"] = send.policy
    if send.survey:
        token = secrets.token_urlsafe(18)
        decisions["survey"] = {"kind": send.survey, "token": token}
    row = _outbox_row(
        enrollment,
        member,
        step,
        key,
        now,
        channel=send.channel,
        purpose="transactional" if send.transactional else "marketing",
        template=send.template,
        decisions=decisions,
    )
    row["unsubscribe_token"] = secrets.token_urlsafe(24)
    together = kept_together(session)
    if together is not None and not send.survey:
        together.append(row)  # its id comes with the batch's one insert (`messages_together`)
        return None
    message_id = insert_ignore_returning(session, Message, row, ["idempotency_key"], Message.id)
    if message_id is None:
        return None
    if send.survey:
        session.add(
            Survey(
                member_id=member.id,
                enrollment_id=enrollment.id,
                kind=send.survey,
                channel=send.channel,
                token=decisions["survey"]["token"],
                sent_at=now,
            )
        )
    return message_id


def _queue_crm(
    session: Session,
    enrollment: Enrollment,
    member: Member,
    step: str,
    update: CrmUpdate,
    key: str,
    now: datetime,
) -> None:
    """A CRM property update waits in the outbox for the CRM sync to push it."""
    row = _outbox_row(
        enrollment,
        member,
        step,
        key,
        now,
        channel="crm",
        purpose="transactional",
        template=None,
        decisions={"properties": update.properties},
    )
    insert_ignore(session, Message, [row], ["idempotency_key"])


def _insert_outbox(session: Session, row: dict[str, Any]) -> int | None:
    """Insert one outbox row once; its id, or None when the step already queued it."""
    return insert_ignore_returning(session, Message, row, ["idempotency_key"], Message.id)


def _http_body(
    request: HttpRequest,
    key: str,
    step: str,
    member_fields: Mapping[str, Any],
    published: Published,
) -> dict[str, Any]:
    """The JSON an `http` step posts: who, which journey and step, and the chosen fields."""
    member: dict[str, Any] = {}
    for name in request.member_fields:
        if name.startswith("attributes."):
            member[name] = (member_fields.get("attributes") or {}).get(name.split(".", 1)[1])
        else:
            member[name] = member_fields.get(name)
    return {
        "idempotency_key": key,
        "journey": {"id": published.journey.id, "name": published.journey.name},
        "step": step,
        "member": member,
    }


def _event_of(session: Session, enrollment: Enrollment) -> dict[str, Any] | None:
    """The event that started (or last woke) the enrollment: its type and data."""
    data = enrollment.context.get("event")
    if data is None:
        return None
    event_id = enrollment.context.get("event_id")
    event = session.get(Event, event_id) if isinstance(event_id, int) else None
    return {"type": event.type if event else None, "data": data}


def _canonical_json(body: dict[str, Any], now: datetime) -> str:
    """The body as the bytes that are signed and sent on every try (stable key order)."""
    body = {**body, "created_at": now.isoformat()}
    return json.dumps(to_jsonable_python(body), sort_keys=True, separators=(",", ":"))


def _render_properties(
    properties: dict[str, Any],
    member_fields: Mapping[str, Any],
    published: Published,
    enrollment: Enrollment,
) -> dict[str, Any]:
    """Text values may use template variables; they are filled in when the step runs."""
    data = template_data(
        member_fields, published.journey, enrollment.context, unsubscribe_url="", survey_url=None
    )
    out: dict[str, Any] = {}
    for name, value in properties.items():
        if isinstance(value, str) and "{" in value:
            try:
                value = render_text(value, data)
            except RenderError as exc:
                value = None
                log.warning(
                    "crm.property_render_failed", extra={"property": name, "reason": str(exc)}
                )
        out[name] = value
    return out


def _outbox_row(
    enrollment: Enrollment,
    member: Member,
    step: str,
    key: str,
    now: datetime,
    *,
    channel: str,
    purpose: str,
    template: str | None,
    decisions: dict[str, Any],
) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "enrollment_id": enrollment.id,
        "member_id": member.id,
        "journey_id": enrollment.journey_id,
        "step_id": step,
        "channel": channel,
        "purpose": purpose,
        "template": template,
        "state": MessageState.PENDING,
        "attempts": 0,
        "decisions": decisions,
        "created_at": now,
        "updated_at": now,
    }

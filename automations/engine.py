"""The journey engine's decisions: definition + member state + clock → what one step does.

Nothing here touches the database or the network; `runner` applies the
outcome of one step in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from automations.definition import (
    END,
    AwardPoints,
    Branch,
    Context,
    CrmTask,
    Exit,
    HttpCall,
    Journey,
    SendEmail,
    SendSms,
    SendSurvey,
    Split,
    UpdateCrm,
    Wait,
    choose_variant,
    evaluate,
)
from loyalty.clock import next_local_time

__all__ = [
    "HOLDOUT",
    "Award",
    "CrmUpdate",
    "FollowUpTask",
    "HttpRequest",
    "Outcome",
    "Send",
    "StepState",
    "decide",
    "next_local_time",
]


#: The variant name of a split's control group (members who get nothing).
HOLDOUT = "holdout"


@dataclass(frozen=True)
class Award:
    points: int
    reason: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Send:
    channel: str
    template: str | None
    transactional: bool
    template_id: str | dict[str, str] | None = None
    max_segments: int | None = None
    survey: str | None = None
    policy: dict[str, Any] | None = None


@dataclass(frozen=True)
class CrmUpdate:
    properties: dict[str, Any]


@dataclass(frozen=True)
class HttpRequest:
    """A signed POST to a named endpoint; `data` text is rendered when the step runs."""

    endpoint: str
    member_fields: tuple[str, ...]
    include_event: bool
    data: dict[str, Any]


@dataclass(frozen=True)
class FollowUpTask:
    """A task on the member's contact in each of `crms` that can take it, due at `due_at`."""

    subject: str
    body: str | None
    due_at: datetime
    priority: str
    owners: dict[str, str]
    crms: tuple[str, ...]


Action = Award | Send | CrmUpdate | HttpRequest | FollowUpTask


@dataclass(frozen=True)
class StepState:
    """What a step may read about the member and the moment."""

    member: Mapping[str, Any]
    zone: str
    now: datetime
    event: Mapping[str, Any] | None = None
    count_events: Callable[[str, datetime], int] | None = None
    tiers: Sequence[str] = ("bronze", "silver", "gold")
    default_expiry_days: int = 365
    count_engagements: Callable[[str, str | None, str | None, datetime], int] | None = None
    #: When the member entered: a holdout waits out the goal window from then.
    entered_at: datetime | None = None


@dataclass(frozen=True)
class Outcome:
    """What one step does and where the enrollment goes next.

    `next_step` is a step id, END, or None while waiting; a wait sets
    `wake_at` and, for an event wait, `waiting_for`.
    """

    step: str
    actions: tuple[Action, ...] = ()
    next_step: str | None = None
    wake_at: datetime | None = None
    waiting_for: dict[str, Any] | None = None
    exit_reason: str | None = None
    note: dict[str, Any] = field(default_factory=dict)


def decide(journey: Journey, step_id: str, state: StepState) -> Outcome:
    """The outcome of running step `step_id` now."""
    step = journey.step(step_id)
    following = journey.following(step_id)
    if isinstance(step, AwardPoints):
        points = step.points_for(state.member.get("tier"))
        expiry = step.expires_in or (
            timedelta(days=state.default_expiry_days) if state.default_expiry_days else None
        )
        award = Award(points, step.reason, state.now + expiry if expiry else None)
        return Outcome(step.id, (award,) if points else (), following)
    if isinstance(step, SendEmail):
        policy = step.policy.model_dump(mode="json") if step.policy else None
        send = Send("email", step.template, step.transactional, step.template_id, policy=policy)
        return Outcome(step.id, (send,), following)
    if isinstance(step, SendSms):
        policy = step.policy.model_dump(mode="json") if step.policy else None
        send = Send("sms", step.template, step.transactional, None, step.max_segments, None, policy)
        return Outcome(step.id, (send,), following)
    if isinstance(step, SendSurvey):
        policy = step.policy.model_dump(mode="json") if step.policy else None
        send = Send(step.channel, step.template, False, survey=step.survey, policy=policy)
        return Outcome(step.id, (send,), following)
    if isinstance(step, UpdateCrm):
        return Outcome(step.id, (CrmUpdate(dict(step.properties)),), following)
    if isinstance(step, HttpCall):
        fields = tuple(dict.fromkeys(("external_id", *step.member_fields)))
        request = HttpRequest(step.endpoint, fields, step.include_event, dict(step.data))
        return Outcome(step.id, (request,), following)
    if isinstance(step, CrmTask):
        owners = step.owner.model_dump(exclude_none=True) if step.owner else {}
        task = FollowUpTask(
            step.subject,
            step.body,
            state.now + step.due_in,
            step.priority,
            owners,
            tuple(step.crms),
        )
        return Outcome(step.id, (task,), following)
    if isinstance(step, Branch):
        taken = evaluate(step.if_, _context(state))
        target = step.then if taken else (step.else_ or following)
        return Outcome(step.id, (), target, note={"branch": "then" if taken else "else"})
    if isinstance(step, Split):
        variant = choose_variant(step, journey.id, str(state.member["external_id"]))
        if variant is None:
            return _holdout(journey, step.id, state)
        return Outcome(step.id, (), variant.next, note={"variant": variant.name})
    if isinstance(step, Wait):
        return _wait(step, following, state)
    if isinstance(step, Exit):
        return Outcome(step.id, (), END, exit_reason=step.reason or "exit")
    raise TypeError(f"no decision for step type {type(step).__name__}")


def _holdout(journey: Journey, step_id: str, state: StepState) -> Outcome:
    """The control group receives nothing but stays until the goal window ends.

    So its conversions count like everyone else's; without a goal there is
    nothing to measure, and the member leaves at once.
    """
    note: dict[str, Any] = {"variant": HOLDOUT}
    if journey.goal is not None:
        until = (state.entered_at or state.now) + journey.goal.within
        if until > state.now:
            note["resume"] = END
            return Outcome(step_id, wake_at=until, exit_reason=HOLDOUT, note=note)
    return Outcome(step_id, (), END, exit_reason=HOLDOUT, note=note)


def _context(state: StepState) -> Context:
    return Context(
        member=state.member,
        now=state.now,
        event=state.event,
        count_events=state.count_events,
        tiers=state.tiers,
        count_engagements=state.count_engagements,
    )


def _wait(step: Wait, following: str, state: StepState) -> Outcome:
    if step.until_event is not None:
        waiting_for = {
            "event": step.until_event.event,
            "conditions": (
                step.until_event.conditions.model_dump(mode="json", by_alias=True)
                if step.until_event.conditions is not None
                else None
            ),
            "on_event": step.on_event or following,
            "on_timeout": step.on_timeout or following,
        }
        return Outcome(
            step.id, wake_at=state.now + step.until_event.timeout, waiting_for=waiting_for
        )
    wake = state.now + (step.duration or timedelta())
    if step.until is not None:
        zone = state.zone if step.zone == "member" else step.zone
        wake = next_local_time(wake, step.until, zone)
    return Outcome(step.id, wake_at=wake, note={"resume": following})

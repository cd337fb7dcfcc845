"""The template variable contract: which variables a message of a journey can use.

Every template gets ``member.*`` and ``journey.*``; the rest depends on the
trigger and the channel. The engine builds the render data with the same
names, so a template that validates renders without undefined variables.
"""

from __future__ import annotations

from collections.abc import Mapping

from channels.templates import Channel

from .event_flow import NO_EVENT, event_keys
from .fields import MEMBER_FIELDS, suggest
from .models import AwardPoints, DateTrigger, EventTrigger, Journey, ScheduleTrigger

__all__ = ["ANY", "Channel", "EventKeys", "check_variable", "event_variable", "provided_variables"]


#: Marks a variable whose inner keys are free (the event payload, custom attributes).
ANY: frozenset[str] = frozenset({"*"})

#: A variable that is a plain value: nothing may follow it.
LEAF: frozenset[str] = frozenset()

#: Root name -> the names allowed after it (ANY: anything; LEAF: nothing).
Contract = Mapping[str, frozenset[str]]


class EventKeys(frozenset[str]):
    """The payload keys ``event.<key>`` may use, and the event types they come from."""

    events: frozenset[str] = frozenset()


def event_variable(events: frozenset[str]) -> frozenset[str] | None:
    """The contract of ``event`` when ``events`` can reach a step (None: no event there)."""
    if not events or NO_EVENT in events:
        return None
    keys = event_keys(events)
    if keys is None:
        return ANY
    out = EventKeys(keys)
    out.events = events
    return out


def provided_variables(
    journey: Journey,
    channel: Channel,
    *,
    survey: bool = False,
    events: frozenset[str] | None = None,
) -> Contract:
    """The variables a template sent on ``channel`` by ``journey`` may use.

    - always: ``member.<field>`` (``member.attributes.<any>``), ``journey.id``, ``journey.name``,
      ``tier_name`` (the member's tier in the message's language)
    - an event reaching the step (the trigger's, or one a wait ended on; ``events``,
      default the trigger's): ``event.<key>`` for the keys of its payload
      (any key for custom types)
    - date and schedule triggers: ``occurrence`` (the local date, ``YYYY-MM-DD``)
    - date trigger on ``points_expiry``: ``points_expiring``, ``points_expiring_at``
    - a journey with an ``award_points`` step: ``award.points``, ``award.expires_at``
      (the latest award of this enrollment)
    - email: ``unsubscribe_url``; surveys: ``survey_url``
    """
    out: dict[str, frozenset[str]] = {
        "member": frozenset(MEMBER_FIELDS),
        "journey": frozenset({"id", "name"}),
        "tier_name": LEAF,
    }
    trigger = journey.trigger
    if events is None:
        events = frozenset({trigger.event if isinstance(trigger, EventTrigger) else NO_EVENT})
    event = event_variable(events)
    if event is not None:
        out["event"] = event
    if isinstance(trigger, DateTrigger | ScheduleTrigger):
        out["occurrence"] = LEAF
    if isinstance(trigger, DateTrigger) and trigger.field == "points_expiry":
        out["points_expiring"] = LEAF
        out["points_expiring_at"] = LEAF
    if any(isinstance(step, AwardPoints) for step in journey.steps):
        out["award"] = frozenset({"points", "expires_at"})
    if channel == "email":
        out["unsubscribe_url"] = LEAF
    if survey:
        out["survey_url"] = LEAF
    return out


def check_variable(segments: list[object], contract: Contract) -> tuple[str, str] | None:
    """(message, hint) when the variable path is outside the contract, else None."""
    root = segments[0]
    if not isinstance(root, str):
        return None
    if root not in contract:
        return f"unknown variable `{root}`", suggest(root, sorted(contract))
    allowed = contract[root]
    if len(segments) < 2 or allowed is ANY:
        return None
    second = segments[1]
    name = f"{root}.{second}"
    if not allowed and not isinstance(allowed, EventKeys):
        return f"`{root}` has no field `{second}`", f"use `{root}` on its own"
    if not isinstance(second, str):
        return None
    if second not in allowed:
        if isinstance(allowed, EventKeys):
            what = " or ".join(f"`{e}`" for e in sorted(allowed.events))
            hint = suggest(second, sorted(allowed)) if allowed else f"{what} carries no data"
            return f"unknown variable `{name}`: the data of {what} has no `{second}`", hint
        return f"unknown variable `{name}`", suggest(second, sorted(allowed))
    if len(segments) > 2 and root == "member" and MEMBER_FIELDS.get(second) != "mapping":
        return f"`{name}` has no field `{segments[2]}`", f"use `{name}` on its own"
    return None

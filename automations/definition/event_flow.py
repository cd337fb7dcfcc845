"""Which event a step sees, and whether what reads ``event.<key>`` can find that key.

A member enters with the trigger's event (event triggers) or none (date and
schedule triggers); a wait that ends ``on_event`` hands the awaited event to the
steps after it. Every path is followed, so a step reached two ways sees either
event. A template or condition reading ``event.<key>`` must find the key in the
payload of every event that can reach it (``loyalty.event_types``); custom types
carry any keys.
"""

from __future__ import annotations

from collections.abc import Iterator

from loyalty.event_types import payload_keys
from loyalty.yaml_source import Path_

from .conditions import Condition
from .fields import suggest
from .models import END, Branch, EventTrigger, Journey, Wait
from .structure import Issue, targets, walk_fields

__all__ = ["NO_EVENT", "event_issues", "event_keys", "events_at"]

#: Marks a path on which no event has happened yet (date and schedule journeys).
NO_EVENT = ""


def events_at(journey: Journey) -> dict[str, frozenset[str]]:
    """Step id → the event types (or NO_EVENT) whose payload the step may see."""
    first = journey.trigger.event if isinstance(journey.trigger, EventTrigger) else NO_EVENT
    index = {step.id: i for i, step in enumerate(journey.steps)}
    seen: dict[str, set[str]] = {step.id: set() for step in journey.steps}
    todo = [(journey.steps[0].id, first)]
    while todo:
        step_id, event = todo.pop()
        if step_id not in seen or event in seen[step_id]:
            continue
        seen[step_id].add(event)
        step = journey.steps[index[step_id]]
        for path, target in targets(journey, index[step_id]):
            if target == END:
                continue
            handed = event
            if isinstance(step, Wait) and step.until_event and path[-1] == "on_event":
                handed = step.until_event.event
            todo.append((target, handed))
    # A step nothing leads to is reported elsewhere; judge it as if entered directly.
    return {k: frozenset(v or {first}) for k, v in seen.items()}


def event_keys(events: frozenset[str]) -> frozenset[str] | None:
    """The payload keys present in every one of ``events``; None: any key (custom types only)."""
    keys: frozenset[str] | None = None
    for event in events:
        declared = payload_keys(event)
        if declared is None:
            continue
        keys = frozenset(declared.all) if keys is None else keys & frozenset(declared.all)
    return keys


def describe(events: frozenset[str]) -> str:
    """`order.completed` or `a` or `b`, for messages."""
    return " or ".join(f"`{e}`" for e in sorted(events) if e != NO_EVENT)


def event_issues(journey: Journey) -> list[Issue]:
    """Each ``event.<key>`` in a condition that no event reaching it carries."""
    trigger = journey.trigger
    entered = frozenset({trigger.event if isinstance(trigger, EventTrigger) else NO_EVENT})
    reaching = events_at(journey)
    places: list[tuple[Condition | None, Path_, frozenset[str]]] = [
        (journey.audience, ("audience",), entered)
    ]
    if isinstance(trigger, EventTrigger):
        places.append((trigger.conditions, ("trigger", "conditions"), entered))
    if journey.goal is not None:
        places.append(
            (journey.goal.conditions, ("goal", "conditions"), frozenset({journey.goal.event}))
        )
    for index, step in enumerate(journey.steps):
        if isinstance(step, Branch):
            places.append((step.if_, ("steps", index, "if"), reaching[step.id]))
        if isinstance(step, Wait) and step.until_event is not None:
            awaited = frozenset({step.until_event.event})
            places.append(
                (
                    step.until_event.conditions,
                    ("steps", index, "until_event", "conditions"),
                    awaited,
                )
            )
    issues: list[Issue] = []
    for condition, path, events in places:
        if condition is not None:
            issues += _fields(journey, condition, path, events)
    return issues


def _fields(
    journey: Journey, condition: Condition, path: Path_, events: frozenset[str]
) -> Iterator[Issue]:
    for field, at in walk_fields(condition, path):
        root, _, rest = field.field.partition(".")
        if root != "event":
            continue
        key = rest.split(".")[0]
        if NO_EVENT in events:
            yield Issue(
                (*at, "field"),
                f"`{field.field}` reads an event, but a {journey.trigger.type} trigger has none"
                + (" on every path here" if len(events) > 1 else ""),
                "use event fields with an event trigger, a goal or wait until_event",
            )
            continue
        keys = event_keys(events)
        if keys is not None and key not in keys:
            yield Issue(
                (*at, "field"),
                f"`{field.field}`: the data of {describe(events)} has no `{key}`",
                suggest(key, sorted(keys)) if keys else f"{describe(events)} carries no data",
            )

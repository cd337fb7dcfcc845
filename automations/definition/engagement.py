"""Engagement conditions name journeys and steps: check that those exist and send email.

``{engaged: {journey: birthday_bonus, step: birthday_email, …}}`` may name any
journey of the program, so it is judged against every journey file next to the
ones being checked, read leniently (an id and its steps are enough).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from loyalty.rewards import CATALOG_FILE
from loyalty.yaml_source import Path_, YamlError, load_yaml

from .conditions import (
    AllCondition,
    AnyCondition,
    Condition,
    EmailEngagement,
    EngagedCondition,
    NotCondition,
)
from .fields import suggest
from .models import Branch, EventTrigger, Journey, SendEmail, SendSurvey, Step, Wait
from .structure import Issue

__all__ = ["EMAIL", "Catalog", "catalog_of", "engagement_issues"]

#: What the catalog says of a step that sends email.
EMAIL = "email"

#: Journey id → step id → EMAIL, or the step's type when it sends no email.
Catalog = Mapping[str, Mapping[str, str]]


def catalog_of(paths: Iterable[Path]) -> dict[str, dict[str, str]]:
    """The journeys in these files and in every journey file of their folders."""
    files: set[Path] = set()
    for path in paths:
        files.add(path)
        folder = path if path.is_dir() else path.parent
        if folder.is_dir():
            files.update(
                p
                for p in folder.iterdir()
                if p.suffix in (".yaml", ".yml") and p.is_file() and p.name != CATALOG_FILE
            )
    out: dict[str, dict[str, str]] = {}
    for path in sorted(files):
        if path.is_dir():
            continue
        try:
            data = load_yaml(path).data
        except YamlError:
            continue
        if not isinstance(data, dict):
            continue
        journey_id = data.get("id") if isinstance(data.get("id"), str) else path.stem
        steps = data.get("steps")
        if not isinstance(steps, list):
            steps = []
        out.setdefault(str(journey_id), {}).update(
            {str(s["id"]): _kind(s) for s in steps if isinstance(s, dict) and "id" in s}
        )
    return out


def _kind(step: Mapping[str, object]) -> str:
    kind = str(step.get("type", "?"))
    if kind == "send_email" or (kind == "send_survey" and step.get("channel") == "email"):
        return EMAIL
    return kind


def engagement_issues(journey: Journey, catalog: Catalog) -> list[Issue]:
    """Each engagement condition naming a journey or step that does not exist or sends no email."""
    own = {step.id: EMAIL if _sends_email(step) else step.type for step in journey.steps}
    known = {**catalog, journey.id: own}
    issues: list[Issue] = []
    for condition, path in _places(journey):
        for engaged, at in _walk(condition, path):
            issue = _check(engaged.engaged, (*at, "engaged"), journey.id, known)
            if issue is not None:
                issues.append(issue)
    return issues


def _check(wanted: EmailEngagement, at: Path_, own_id: str, known: Catalog) -> Issue | None:
    if wanted.journey is None:
        if wanted.step is None:
            return None
        return Issue(
            (*at, "step"),
            f"`step: {wanted.step}` needs `journey`: the journey the step belongs to",
            f"add `journey: {own_id}`, or the id of the journey whose step it is",
        )
    if wanted.journey not in known:
        return Issue(
            (*at, "journey"),
            f"unknown journey `{wanted.journey}`",
            suggest(wanted.journey, sorted(known)),
        )
    steps = known[wanted.journey]
    if wanted.step is None:
        return None
    if wanted.step not in steps:
        return Issue(
            (*at, "step"),
            f"journey `{wanted.journey}` has no step `{wanted.step}`",
            suggest(wanted.step, sorted(steps)),
        )
    if steps[wanted.step] != EMAIL:
        emails = sorted(k for k, v in steps.items() if v == EMAIL)
        return Issue(
            (*at, "step"),
            f"step `{wanted.step}` of journey `{wanted.journey}` sends no email "
            f"(type: {steps[wanted.step]})",
            "name an email step: " + ", ".join(emails) if emails else "that journey sends no email",
        )
    return None


def _sends_email(step: Step) -> bool:
    return isinstance(step, SendEmail) or (isinstance(step, SendSurvey) and step.channel == EMAIL)


def _places(journey: Journey) -> Iterator[tuple[Condition, Path_]]:
    """Every condition of the journey, with its data path."""
    if journey.audience is not None:
        yield journey.audience, ("audience",)
    trigger = journey.trigger
    if isinstance(trigger, EventTrigger) and trigger.conditions is not None:
        yield trigger.conditions, ("trigger", "conditions")
    if journey.goal is not None and journey.goal.conditions is not None:
        yield journey.goal.conditions, ("goal", "conditions")
    for index, step in enumerate(journey.steps):
        if isinstance(step, Branch):
            yield step.if_, ("steps", index, "if")
        if isinstance(step, Wait) and step.until_event and step.until_event.conditions:
            yield step.until_event.conditions, ("steps", index, "until_event", "conditions")


def _walk(condition: Condition, path: Path_) -> Iterator[tuple[EngagedCondition, Path_]]:
    if isinstance(condition, EngagedCondition):
        yield condition, path
    elif isinstance(condition, AllCondition):
        for i, child in enumerate(condition.all):
            yield from _walk(child, (*path, "all", i))
    elif isinstance(condition, AnyCondition):
        for i, child in enumerate(condition.any):
            yield from _walk(child, (*path, "any", i))
    elif isinstance(condition, NotCondition):
        yield from _walk(condition.not_, (*path, "not"))

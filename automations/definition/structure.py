"""How the parts of a journey fit together: step ids, jump targets, loops, tiers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from loyalty.yaml_source import Path_

from .conditions import AllCondition, AnyCondition, Condition, FieldCondition, NotCondition
from .fields import DEFAULT_TIERS, suggest
from .models import (
    END,
    AwardPoints,
    Branch,
    Exit,
    Journey,
    SendEmail,
    Split,
    Wait,
)

__all__ = ["Issue", "structure_issues", "targets", "walk_fields"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Issue:
    """A problem at a data path of the journey file (``key``: point at the key, not the value)."""

    path: Path_
    message: str
    hint: str = ""
    severity: Severity = "error"
    key: bool = False


def targets(journey: Journey, index: int) -> list[tuple[Path_, str]]:
    """Every step a step can go to, with the data path that names it (END included)."""
    step = journey.steps[index]
    base: Path_ = ("steps", index)
    following = step.next or (
        journey.steps[index + 1].id if index + 1 < len(journey.steps) else END
    )
    out: list[tuple[Path_, str]] = []
    if isinstance(step, Branch):
        out.append(((*base, "then"), step.then))
        out.append(((*base, "else"), step.else_ or following))
    elif isinstance(step, Split):
        out.extend(((*base, "variants", j, "next"), v.next) for j, v in enumerate(step.variants))
        if step.holdout:
            out.append((base, END))
    elif isinstance(step, Wait) and step.until_event is not None:
        out.append(((*base, "on_event"), step.on_event or following))
        out.append(((*base, "on_timeout"), step.on_timeout or following))
    elif step.type != "exit":
        out.append(((*base, "next"), following))
    return out


def structure_issues(journey: Journey, tiers: Sequence[str] = DEFAULT_TIERS) -> list[Issue]:
    """Everything wrong with how the journey's parts refer to each other."""
    issues: list[Issue] = []
    issues += _step_ids(journey)
    ids = {s.id for s in journey.steps}
    for index, step in enumerate(journey.steps):
        if isinstance(step, Branch | Split | Exit) and step.next is not None:
            why = "ends the journey" if isinstance(step, Exit) else "chooses where to go"
            issues.append(
                Issue(
                    ("steps", index, "next"),
                    f"{'an' if isinstance(step, Exit) else 'a'} {step.type} {why}; "
                    "`next` has no effect here",
                    "remove next" + (" and use else" if isinstance(step, Branch) else ""),
                    key=True,
                )
            )
        for path, target in targets(journey, index):
            if target != END and target not in ids:
                issues.append(
                    Issue(
                        path,
                        f"step `{step.id}` goes to `{target}`, which is not a step of this journey",
                        suggest(target, [*sorted(ids), END]),
                    )
                )
        if isinstance(step, Split):
            issues += [
                Issue(
                    ("steps", index, "variants", j, "name"),
                    "`holdout` names the control group, not a variant",
                    "rename the variant, or use `holdout: <percent>` for a control group",
                )
                for j, variant in enumerate(step.variants)
                if variant.name == "holdout"
            ]
        if isinstance(step, AwardPoints) and isinstance(step.amount, dict):
            issues += _tier_amounts(step, index, tiers)
        if isinstance(step, SendEmail) and isinstance(step.template_id, dict):
            missing = [loc for loc in journey.all_locales if loc not in step.template_id]
            if missing:
                issues.append(
                    Issue(
                        ("steps", index, "template_id"),
                        "template_id has no id for locale " + ", ".join(missing),
                        "add a template id for every locale in locales",
                    )
                )
    if not issues:
        issues += _loops(journey) + _unreachable(journey)
    return issues


def _step_ids(journey: Journey) -> list[Issue]:
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    for index, step in enumerate(journey.steps):
        path: Path_ = ("steps", index, "id")
        if step.id == END:
            issues.append(Issue(path, f"`{END}` is reserved for ending the journey", "rename"))
        elif step.id in seen:
            issues.append(
                Issue(
                    path,
                    f"duplicate step id `{step.id}` (also step {seen[step.id] + 1})",
                    "give every step its own id",
                )
            )
        seen.setdefault(step.id, index)
    return issues


def _tier_amounts(step: AwardPoints, index: int, tiers: Sequence[str]) -> list[Issue]:
    assert isinstance(step.amount, dict)
    path: Path_ = ("steps", index, "amount")
    issues = [
        Issue((*path, tier), f"unknown tier `{tier}`", suggest(tier, [*tiers, "default"]), key=True)
        for tier in step.amount
        if tier not in tiers and tier != "default"
    ]
    uncovered = [t for t in tiers if t not in step.amount]
    if uncovered and "default" not in step.amount:
        issues.append(
            Issue(
                path,
                "no amount for tier " + ", ".join(uncovered),
                "add those tiers, or a `default` amount",
            )
        )
    return issues


def _edges(journey: Journey) -> dict[str, list[str]]:
    return {
        step.id: [t for _, t in targets(journey, i) if t != END]
        for i, step in enumerate(journey.steps)
    }


def _loops(journey: Journey) -> list[Issue]:
    """A loop without a wait would run forever within one tick."""
    edges = _edges(journey)
    waits = {s.id for s in journey.steps if isinstance(s, Wait)}
    state: dict[str, int] = {}

    def visit(node: str) -> str | None:
        state[node] = 1
        for nxt in edges[node]:
            if nxt in waits:
                continue
            if state.get(nxt) == 1:
                return nxt
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        return None

    for step in journey.steps:
        if step.id not in state and step.id not in waits and (loop := visit(step.id)):
            at = next(i for i, s in enumerate(journey.steps) if s.id == loop)
            return [
                Issue(
                    ("steps", at, "id"),
                    f"steps loop back to `{loop}` without a wait",
                    "add a wait step inside the loop, or end it with an exit",
                )
            ]
    return []


def _unreachable(journey: Journey) -> list[Issue]:
    edges = _edges(journey)
    seen: set[str] = set()
    todo = [journey.steps[0].id]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(edges[node])
    return [
        Issue(
            ("steps", index, "id"),
            f"step `{step.id}` is never reached",
            "refer to it from another step, or remove it",
            severity="warning",
        )
        for index, step in enumerate(journey.steps)
        if step.id not in seen
    ]


def walk_fields(condition: Condition, path: Path_) -> Iterator[tuple[FieldCondition, Path_]]:
    """Every field comparison in a condition, with its data path."""
    if isinstance(condition, FieldCondition):
        yield condition, path
    elif isinstance(condition, AllCondition):
        for i, child in enumerate(condition.all):
            yield from walk_fields(child, (*path, "all", i))
    elif isinstance(condition, AnyCondition):
        for i, child in enumerate(condition.any):
            yield from walk_fields(child, (*path, "any", i))
    elif isinstance(condition, NotCondition):
        yield from walk_fields(condition.not_, (*path, "not"))

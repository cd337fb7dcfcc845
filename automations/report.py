"""Split results: per variant entries, sends, conversions, and the lift over the holdout.

The holdout is the control group: its members stay enrolled, receiving
nothing, until the goal window ends, so a conversion counts for them as for
everyone else (`engine.decide`). Each variant's lift is the difference of its
conversion rate and the holdout's, with a 95% Newcombe hybrid score interval
(method 10 of Newcombe 1998: Wilson intervals of each rate combined), which
stays inside [-1, 1] and needs no special case for zero conversions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from automations.definition import Journey, Split
from automations.definition.durations import format_duration
from automations.engine import HOLDOUT
from automations.versions import latest_versions, load_version
from loyalty.models import Enrollment, Message
from loyalty.states import MessageState

__all__ = [
    "CONFIDENCE",
    "Arm",
    "JourneyReport",
    "Lift",
    "UnknownJourneyError",
    "format_report",
    "journey_report",
    "newcombe_interval",
    "wilson_interval",
]

#: The confidence of the lift intervals, and its two-sided normal quantile.
CONFIDENCE = 0.95
_Z = 1.959963984540054

#: The channels whose messages count as sends (not CRM updates).
_SEND_CHANNELS = ("email", "sms")


class UnknownJourneyError(LookupError):
    """The journey id names no published journey."""


@dataclass(frozen=True)
class Lift:
    """A variant's conversion rate minus the holdout's, with its confidence interval."""

    difference: float
    low: float
    high: float


@dataclass(frozen=True)
class Arm:
    """One variant (or the holdout, or members not split yet: ``variant`` None)."""

    variant: str | None
    entries: int
    sends: int
    conversions: int
    lift: Lift | None = None

    @property
    def rate(self) -> float | None:
        return self.conversions / self.entries if self.entries else None

    @property
    def control(self) -> bool:
        return self.variant == HOLDOUT

    def as_json(self) -> dict[str, Any]:
        lift = self.lift
        return {
            "variant": self.variant,
            "control": self.control,
            "entries": self.entries,
            "sends": self.sends,
            "conversions": self.conversions,
            "conversion_rate": self.rate,
            "lift": (
                {"difference": lift.difference, "low": lift.low, "high": lift.high}
                if lift
                else None
            ),
        }


@dataclass(frozen=True)
class JourneyReport:
    journey_id: str
    name: str
    goal: str | None
    splits: tuple[str, ...]
    arms: tuple[Arm, ...]
    total: Arm

    @property
    def has_splits(self) -> bool:
        return bool(self.splits) or any(a.variant is not None for a in self.arms)

    def as_json(self) -> dict[str, Any]:
        return {
            "journey": self.journey_id,
            "name": self.name,
            "goal": self.goal,
            "splits": list(self.splits),
            "confidence": CONFIDENCE,
            "interval": "newcombe",
            "variants": [arm.as_json() for arm in self.arms] if self.has_splits else [],
            "total": {k: v for k, v in self.total.as_json().items() if k not in ("variant",)},
        }


def journey_report(
    session: Session, journey_id: str, *, entered_since: datetime | None = None
) -> JourneyReport:
    """The journey's figures per split variant (members who entered since, when given)."""
    journey = _journey(session, journey_id)
    where = [Enrollment.journey_id == journey_id]
    if entered_since is not None:
        where.append(Enrollment.entered_at >= entered_since)
    entries = _by_variant(session, select(Enrollment.variant, func.count(Enrollment.id)), where)
    conversions = _by_variant(
        session,
        select(Enrollment.variant, func.count(Enrollment.id)),
        [*where, Enrollment.converted_at.is_not(None)],
    )
    sends = _by_variant(
        session,
        select(Enrollment.variant, func.count(Message.id)).join(
            Message, Message.enrollment_id == Enrollment.id
        ),
        [*where, Message.state == MessageState.SENT, Message.channel.in_(_SEND_CHANNELS)],
    )
    splits = tuple(s.id for s in journey.steps if isinstance(s, Split))
    names = _variant_order(journey, entries)
    control = Arm(
        HOLDOUT, entries.get(HOLDOUT, 0), sends.get(HOLDOUT, 0), conversions.get(HOLDOUT, 0)
    )
    arms: list[Arm] = []
    for name in names:
        arm = Arm(name, entries.get(name, 0), sends.get(name, 0), conversions.get(name, 0))
        if name not in (HOLDOUT, None) and control.entries and arm.entries:
            arm = Arm(arm.variant, arm.entries, arm.sends, arm.conversions, _lift(arm, control))
        arms.append(arm)
    total = Arm(None, sum(entries.values()), sum(sends.values()), sum(conversions.values()))
    goal = f"{journey.goal.event} within {_days(journey.goal.within)}" if journey.goal else None
    return JourneyReport(journey.id, journey.name, goal, splits, tuple(arms), total)


def _days(window: timedelta) -> str:
    """A goal window as marketers write it: whole days as days (14d, not 2w)."""
    if window.days and window == timedelta(days=window.days):
        return f"{window.days}d"
    return format_duration(window)


def _journey(session: Session, journey_id: str) -> Journey:
    versions = latest_versions(session)
    for version in versions:
        if version.journey_id == journey_id:
            return load_version(version).journey
    known = ", ".join(v.journey_id for v in versions) or "none published yet"
    raise UnknownJourneyError(
        f"unknown journey `{journey_id}`; the journeys are: {known} (see `loyalty journeys list`)"
    )


def _by_variant(session: Session, query: Any, where: list[Any]) -> dict[str | None, int]:
    rows = session.execute(query.where(*where).group_by(Enrollment.variant))
    return {variant: int(count) for variant, count in rows}


def _variant_order(journey: Journey, entries: dict[str | None, int]) -> list[str | None]:
    """The latest version's variants in their order, the holdout, then any older names."""
    names: list[str | None] = []
    for step in journey.steps:
        if isinstance(step, Split):
            names += [v.name for v in step.variants]
            if step.holdout:
                names.append(HOLDOUT)
    names += sorted(n for n in entries if n is not None and n not in names)
    if HOLDOUT in names:  # the control goes last, below the variants it is compared with
        names = [n for n in names if n != HOLDOUT] + [HOLDOUT]
    if entries.get(None):
        names.append(None)
    return list(dict.fromkeys(names))


def _lift(arm: Arm, control: Arm) -> Lift:
    low, high = newcombe_interval(
        arm.conversions, arm.entries, control.conversions, control.entries
    )
    difference = arm.conversions / arm.entries - control.conversions / control.entries
    return Lift(difference, low, high)


def wilson_interval(successes: int, trials: int, z: float = _Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion (trials > 0)."""
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, z: float = _Z) -> tuple[float, float]:
    """Newcombe's hybrid score interval of p1 - p2 (both n > 0)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, z)
    l2, u2 = wilson_interval(x2, n2, z)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = difference + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


def format_report(report: JourneyReport) -> Iterable[str]:
    """The report as lines of text."""
    yield f"{report.journey_id} ({report.name})"
    yield f"goal: {report.goal}" if report.goal else "goal: none (conversions are not counted)"
    if report.splits:
        yield "split: " + ", ".join(report.splits)
    header = f"{'variant':<16} {'entries':>8} {'sends':>8} {'conversions':>11} {'rate':>7}"
    if not report.has_splits:
        yield header
        yield _line(report.total, "total")
        return
    yield header + "  lift over holdout (95% CI, Newcombe)"
    for arm in report.arms:
        yield _line(arm)
    yield _line(report.total, "total")


def _line(arm: Arm, label: str | None = None) -> str:
    name = label or (arm.variant if arm.variant is not None else "not split yet")
    rate = f"{arm.rate:.1%}" if arm.rate is not None else "-"
    text = f"{name:<16} {arm.entries:>8} {arm.sends:>8} {arm.conversions:>11} {rate:>7}"
    if arm.control:
        return text + "  control"
    if arm.lift is not None:
        lift = arm.lift
        return text + f"  {_points(lift.difference)} ({_points(lift.low)} to {_points(lift.high)})"
    if label is None and arm.variant is not None:
        return text + "  - (no holdout members to compare with)"
    return text


def _points(value: float) -> str:
    return f"{value * 100:+.1f} pp"

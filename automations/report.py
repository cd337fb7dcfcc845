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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from automations.definition import Journey, Split
from automations.definition.durations import format_duration
from automations.engine import HOLDOUT
from automations.versions import latest_versions, load_version
from loyalty.models import Enrollment, Message, SplitChoice
from loyalty.states import MessageState

__all__ = [
    "CONFIDENCE",
    "Arm",
    "JourneyReport",
    "Lift",
    "SplitReport",
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
class SplitReport:
    """One split step's arms: its variants, its holdout, and members not through it."""

    split: str
    arms: tuple[Arm, ...]

    def as_json(self) -> dict[str, Any]:
        return {"split": self.split, "variants": [arm.as_json() for arm in self.arms]}


@dataclass(frozen=True)
class JourneyReport:
    journey_id: str
    name: str
    goal: str | None
    splits: tuple[SplitReport, ...]
    total: Arm
    #: When counted from a moment (a simulation's start): that moment, and how many of the
    #: entries were members already in flight then, who entered before it.
    active_at: datetime | None = None
    in_flight: int = 0

    @property
    def has_splits(self) -> bool:
        return bool(self.splits)

    @property
    def arms(self) -> tuple[Arm, ...]:
        """The first split's arms."""
        return self.splits[0].arms if self.splits else ()

    def as_json(self) -> dict[str, Any]:
        return {
            "journey": self.journey_id,
            "name": self.name,
            "goal": self.goal,
            "splits": [split.as_json() for split in self.splits],
            "confidence": CONFIDENCE,
            "interval": "newcombe",
            # The first split's, as before journeys had several.
            "variants": [arm.as_json() for arm in self.arms],
            "total": {k: v for k, v in self.total.as_json().items() if k not in ("variant",)},
            **(
                {"counted_from": self.active_at.isoformat(), "in_flight_at_start": self.in_flight}
                if self.active_at is not None
                else {}
            ),
        }


def journey_report(
    session: Session,
    journey_id: str,
    *,
    entered_since: datetime | None = None,
    active_at: datetime | None = None,
) -> JourneyReport:
    """The journey's figures per split and variant.

    Every enrollment by default; the members who entered since `entered_since`;
    or, with `active_at`, those who entered since and those still in flight at
    that moment (counted as entries, and said apart in `in_flight`). Each split
    counts the variants recorded as members went through it (`split_choices`);
    members who have not been through a split are its "not split yet" arm. Sends
    and conversions are the enrollment's, whole.
    """
    journey = _journey(session, journey_id)
    where: list[Any] = [Enrollment.journey_id == journey_id]
    if entered_since is not None:
        where.append(Enrollment.entered_at >= entered_since)
    in_flight = 0
    if active_at is not None:
        going = and_(
            Enrollment.entered_at < active_at,
            or_(Enrollment.exited_at.is_(None), Enrollment.exited_at >= active_at),
            or_(Enrollment.converted_at.is_(None), Enrollment.converted_at >= active_at),
        )
        in_flight = int(session.scalar(select(func.count(Enrollment.id)).where(*where, going)) or 0)
        where.append(or_(Enrollment.entered_at >= active_at, going))
    converted = Enrollment.converted_at.is_not(None)
    sent = [Message.state == MessageState.SENT, Message.channel.in_(_SEND_CHANNELS)]
    with_sends = (
        select(func.count(Message.id))
        .select_from(Enrollment)
        .join(Message, Message.enrollment_id == Enrollment.id)
    )
    total = Arm(
        None,
        int(session.scalar(select(func.count(Enrollment.id)).where(*where)) or 0),
        int(session.scalar(with_sends.where(*where, *sent)) or 0),
        int(session.scalar(select(func.count(Enrollment.id)).where(*where, converted)) or 0),
    )
    chosen = select(SplitChoice.split_id, SplitChoice.variant).join(
        Enrollment, Enrollment.id == SplitChoice.enrollment_id
    )
    entries = _by_choice(session, chosen.add_columns(func.count(Enrollment.id)), where)
    conversions = _by_choice(
        session, chosen.add_columns(func.count(Enrollment.id)), [*where, converted]
    )
    sends = _by_choice(
        session,
        chosen.add_columns(func.count(Message.id)).join(
            Message, Message.enrollment_id == Enrollment.id
        ),
        [*where, *sent],
    )
    defined = [s.id for s in journey.steps if isinstance(s, Split)]
    names = list(dict.fromkeys([*defined, *sorted(split for split, _ in entries)]))
    splits = tuple(
        _split(journey, split, entries, sends, conversions, total)
        for split in names
        if split in defined or any(key[0] == split for key in entries)
    )
    goal = f"{journey.goal.event} within {_days(journey.goal.within)}" if journey.goal else None
    return JourneyReport(journey.id, journey.name, goal, splits, total, active_at, in_flight)


Counts = dict[tuple[str, str], int]


def _split(
    journey: Journey, split: str, entries: Counts, sends: Counts, conversions: Counts, total: Arm
) -> SplitReport:
    def arm(name: str) -> Arm:
        key = (split, name)
        return Arm(name, entries.get(key, 0), sends.get(key, 0), conversions.get(key, 0))

    control = arm(HOLDOUT)
    arms: list[Arm] = []
    mine = {name for s, name in entries if s == split}
    for name in _variant_order(journey, split, mine):
        shown = arm(name)
        if name != HOLDOUT and control.entries and shown.entries:
            shown = replace(shown, lift=_lift(shown, control))
        arms.append(shown)
    outside = Arm(
        None,
        total.entries - sum(a.entries for a in arms),
        total.sends - sum(a.sends for a in arms),
        total.conversions - sum(a.conversions for a in arms),
    )
    if outside.entries:
        arms.append(outside)
    return SplitReport(split, tuple(arms))


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


def _by_choice(session: Session, query: Any, where: list[Any]) -> Counts:
    rows = session.execute(query.where(*where).group_by(SplitChoice.split_id, SplitChoice.variant))
    return {(split, variant): int(count) for split, variant, count in rows}


def _variant_order(journey: Journey, split: str, seen: set[str]) -> list[str]:
    """The split's variants in their order in the latest version, then any older names, and
    the holdout last, below the variants it is compared with."""
    names: list[str] = []
    for step in journey.steps:
        if isinstance(step, Split) and step.id == split:
            names += [v.name for v in step.variants]
            if step.holdout:
                names.append(HOLDOUT)
    names += sorted(n for n in seen if n not in names)
    if HOLDOUT in names:
        names = [n for n in names if n != HOLDOUT] + [HOLDOUT]
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
    """The report as lines of text: per split, its variants; then the journey's total."""
    yield f"{report.journey_id} ({report.name})"
    yield f"goal: {report.goal}" if report.goal else "goal: none (conversions are not counted)"
    if report.active_at is not None:
        yield (
            f"entries: members who entered from {report.active_at:%Y-%m-%d %H:%M}Z, and "
            f"{report.in_flight} already in flight then (entered before)"
        )
    header = f"{'variant':<16} {'entries':>8} {'sends':>8} {'conversions':>11} {'rate':>7}"
    for split in report.splits:
        yield f"split: {split.split}"
        yield header + "  lift over holdout (95% CI, Newcombe)"
        for arm in split.arms:
            yield _line(arm)
    if not report.splits:
        yield header
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

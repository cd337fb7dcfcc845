"""Where "now" comes from: injected everywhere so tests and the simulator can travel in time."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

__all__ = [
    "Clock",
    "FrozenClock",
    "SystemClock",
    "ensure_utc",
    "local_instant",
    "next_local_time",
]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to."""

    def __init__(self, at: datetime) -> None:
        self._at = ensure_utc(at)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._at

    def set(self, at: datetime) -> None:
        with self._lock:
            self._at = ensure_utc(at)

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._at += delta


def ensure_utc(value: datetime) -> datetime:
    """Return an aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant the wall clock in `zone` shows `at` on `day`.

    A repeated wall time resolves to its first occurrence; a skipped one to the
    first instant after the gap, so the day still gets its firing.
    """
    # `at` is a plain wall time: any zone or fold it carries is not ours to honour.
    wall = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    # fold=0 is the earlier reading of a repeated time, and for a skipped time it
    # uses the offset from before the change, which lands just after the gap.
    after = wall.replace(tzinfo=zone).astimezone(UTC)
    if after.astimezone(zone).replace(tzinfo=None) == wall:
        return after
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    # The wall clock reads below `wall` at `before` and above it at `after`;
    # bisect on whole seconds (every zone changes on a whole second) for the edge.
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        reading = datetime.fromtimestamp(middle, UTC).astimezone(zone).replace(tzinfo=None)
        if reading >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def next_local_time(after: datetime, at: time, zone: str) -> datetime:
    """The first instant at or after `after` whose wall time in `zone` is `at`.

    A wall time skipped by a DST change maps to the instant after the gap; a
    repeated one to its first occurrence.
    """
    tz = ZoneInfo(zone)
    local = after.astimezone(tz)
    for days in range(0, 3):
        day = local.date() + timedelta(days=days)
        candidate = local_instant(day, at, tz)
        if candidate >= after:
            return candidate
    raise AssertionError("unreachable: a wall time recurs every day")

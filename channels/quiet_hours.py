"""Quiet hours in the recipient's zone: sends inside them are deferred, never dropped."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from loyalty.clock import next_local_time

__all__ = ["QuietHours", "parse_quiet_hours", "quiet_until"]

QuietHours = tuple[time, time]


def parse_quiet_hours(value: str | None) -> QuietHours | None:
    """`HH:MM-HH:MM` → (start, end); empty → None."""
    if not value:
        return None
    start, end = value.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def _inside(local: time, start: time, end: time) -> bool:
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the window crosses midnight


def quiet_until(now: datetime, zone: str, hours: QuietHours | None) -> datetime | None:
    """When the quiet hours around `now` end in `zone`, or None when `now` is not inside."""
    if hours is None:
        return None
    start, end = hours
    local = now.astimezone(ZoneInfo(zone))
    if not _inside(local.time().replace(tzinfo=None), start, end):
        return None
    return next_local_time(now, end, zone)

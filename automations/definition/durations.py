"""Durations as marketers write them: ``30min``, ``2h``, ``3d``, ``1w``, ``1mo`` or ``P3D``.

A bare ``m`` is refused: ``1m`` reads as a minute to some and a month to others.
A month (``mo``) counts 30 days and a year (``y``) 365: a duration is a fixed length.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = ["STORED", "Duration", "DurationError", "format_duration", "parse_duration"]

#: Seconds per unit, largest first; units must be written in this order.
_UNITS = {
    "y": 365 * 86400,
    "mo": 30 * 86400,
    "w": 604800,
    "d": 86400,
    "h": 3600,
    "min": 60,
    "s": 1,
}

#: Units ``format_duration`` writes (exact lengths only, so they read back the same).
_FORMAT_UNITS = ("w", "d", "h", "min", "s")

#: Validation context of stored versions: they were written with ``m`` for minutes.
STORED = {"durations": "stored"}

_PART = re.compile(r"(\d+)([a-z]+)")

#: ISO 8601 without years and months: a month has no fixed length, so ``P1M`` is refused.
_ISO = re.compile(
    r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$",
)

#: Guard against absurd values that would overflow ``datetime`` arithmetic (about 100 years).
MAX_DURATION = timedelta(days=36600)

HINT = (
    'write a number and a unit (min, h, d, w, mo, y), e.g. "30min", "2h", "3d", "1w", '
    '"1d12h", or ISO 8601 "P3D"'
)


class DurationError(ValueError):
    """The text is not a duration; ``hint`` says what would be right."""

    def __init__(self, message: str, hint: str = HINT) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _compact(text: str, raw: str, *, minutes_as_m: bool) -> int | None:
    """Seconds of the compact form, None when it is not one; DurationError when ambiguous."""
    position, seconds, last = 0, 0, -1
    order = list(_UNITS)
    for match in _PART.finditer(raw):
        if match.start() != position:
            return None
        number, unit = int(match.group(1)), match.group(2)
        if unit == "m":
            if not minutes_as_m:
                raise DurationError(
                    f'"{text}": `m` could mean minutes or months',
                    f"write {number}min or {number}mo",
                )
            unit = "min"
        if unit not in _UNITS or order.index(unit) <= last:
            return None
        last = order.index(unit)
        seconds += number * _UNITS[unit]
        position = match.end()
    return seconds if position and position == len(raw) else None


def parse_duration(text: str, *, minutes_as_m: bool = False) -> timedelta:
    """Parse ``text`` into a positive timedelta or raise DurationError.

    ``minutes_as_m`` reads ``m`` as minutes, as stored versions were written.
    """
    raw = text.strip()
    compact = _compact(text, raw.lower(), minutes_as_m=minutes_as_m) if raw else None
    iso = _ISO.match(raw.upper()) if raw[:1] in ("P", "p") else None
    if compact is not None:
        seconds = compact
    elif iso and any(iso.groups()):
        weeks, days, hours, minutes, secs = (int(n) if n else 0 for n in iso.groups())
        seconds = weeks * 604800 + days * 86400 + hours * 3600 + minutes * 60 + secs
    else:
        if re.match(r"^P.*\d+[YM]", raw.upper().split("T")[0]):
            raise DurationError(
                f'"{text}" uses years or months, which have no fixed length',
                'write "1mo" (30 days), "1y" (365 days) or days, e.g. "P30D"',
            )
        raise DurationError(f'"{text}" is not a duration')
    if seconds <= 0:
        raise DurationError(f'"{text}" is zero', "a duration must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise DurationError(f'"{text}" is too long', "a duration can be at most 36600d")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Format a timedelta in the compact form (``1d12h``); the inverse of parse_duration."""
    remaining = int(value.total_seconds())
    out = []
    for unit in _FORMAT_UNITS:
        count, remaining = divmod(remaining, _UNITS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def _validate(value: object, info: ValidationInfo) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise PydanticCustomError(
            "duration",
            "expected a duration such as 3d, got {value}",
            {"value": repr(value), "hint": HINT},
        )
    stored = isinstance(info.context, dict) and info.context.get("durations") == "stored"
    try:
        return parse_duration(value, minutes_as_m=stored)
    except DurationError as exc:
        message = exc.message.replace("{", "{{").replace("}", "}}")
        raise PydanticCustomError("duration", message, {"hint": exc.hint}) from None


#: A pydantic field type: parses the text form, serialises back to it.
Duration = Annotated[
    timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(\d+(y|mo|w|d|h|min|s))+$|^[Pp]",
            "description": (
                'A duration: "30min", "2h", "3d", "1w", "1mo" (30 days), "1y" (365 days), '
                '"1d12h" or ISO 8601 "P3D".'
            ),
            "examples": ["30min", "2h", "3d", "1w", "1mo", "P3D"],
        }
    ),
]

"""Durations as marketers write them: ``30m``, ``2h``, ``3d``, ``1w``, ``1d12h`` or ``P3D``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = ["Duration", "DurationError", "format_duration", "parse_duration"]

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}

#: Compact form: one or more number+unit pairs, largest unit first (``1w2d``, ``1h30m``).
_COMPACT = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

#: ISO 8601 without years and months: a month has no fixed length, so ``P1M`` is refused.
_ISO = re.compile(
    r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$",
)

#: Guard against absurd values that would overflow ``datetime`` arithmetic (about 100 years).
MAX_DURATION = timedelta(days=36600)

HINT = 'write a number and a unit, e.g. "30m", "2h", "3d", "1w", "1d12h", or ISO 8601 "P3D"'


class DurationError(ValueError):
    """The text is not a duration; ``hint`` says what would be right."""

    def __init__(self, message: str, hint: str = HINT) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse_duration(text: str) -> timedelta:
    """Parse ``text`` into a positive timedelta or raise DurationError."""
    raw = text.strip()
    compact = _COMPACT.match(raw.lower()) if raw else None
    iso = _ISO.match(raw.upper()) if raw[:1] in ("P", "p") else None
    if raw and compact and any(compact.groups()):
        parts = compact.groups()
        seconds = sum(int(n) * unit for n, unit in zip(parts, _UNITS.values(), strict=True) if n)
    elif iso and any(iso.groups()):
        weeks, days, hours, minutes, secs = (int(n) if n else 0 for n in iso.groups())
        seconds = weeks * 604800 + days * 86400 + hours * 3600 + minutes * 60 + secs
    else:
        if re.match(r"^P.*\d+[YM]", raw.upper().split("T")[0]):
            raise DurationError(
                f'"{text}" uses years or months, which have no fixed length',
                'use days or weeks instead, e.g. "P30D" or "4w"',
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
    for unit, size in _UNITS.items():
        count, remaining = divmod(remaining, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def _validate(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise PydanticCustomError(
            "duration",
            "expected a duration such as 3d, got {value}",
            {"value": repr(value), "hint": HINT},
        )
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise PydanticCustomError("duration", exc.message, {"hint": exc.hint}) from None


#: A pydantic field type: parses the text form, serialises back to it.
Duration = Annotated[
    timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(\d+[wdhms])+$|^P",
            "description": 'A duration: "30m", "2h", "3d", "1w", "1d12h" or ISO 8601 "P3D".',
            "examples": ["30m", "2h", "3d", "1w", "P3D"],
        }
    ),
]

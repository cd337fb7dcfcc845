"""Shared building blocks of the definition models: the strict base and small value types."""

from __future__ import annotations

import re
import zoneinfo
from datetime import time
from functools import cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from .fields import suggest
from .program import program_of, unknown_event_hint

__all__ = [
    "Identifier",
    "LocalTime",
    "Name",
    "StrictModel",
    "Text",
    "Zone",
    "problem",
]


class StrictModel(BaseModel):
    """Immutable, rejects unknown keys (a typo must never be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def problem(kind: str, message: str, hint: str = "") -> PydanticCustomError:
    """A validation error whose ``ctx['hint']`` tells the marketer what would be right."""
    return PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}"), {"hint": hint})


_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


def _identifier(value: Any) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise problem(
            "identifier",
            f"{value!r} is not a valid name",
            "use lower-case letters, digits and underscores, starting with a letter",
        )
    return value


#: Journey ids, step ids, template names: ``birthday_bonus``, ``send_email_2``.
Identifier = Annotated[
    str,
    BeforeValidator(_identifier),
    WithJsonSchema({"type": "string", "pattern": _IDENTIFIER.pattern}),
]

_EVENT_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]*$")


def _event_type(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not _EVENT_TYPE.match(value):
        raise problem("event_type", f"{value!r} is not a valid event type", "e.g. order.completed")
    program = program_of(info)
    if program is not None and value not in program.event_types:
        # The program refuses events of an unknown type: a journey waiting for one waits forever.
        raise problem(
            "event_type",
            f"unknown event type `{value}`",
            unknown_event_hint(value, program.event_types),
        )
    return value


#: Event type names as the events API receives them (``order.completed``, ``review.created``);
#: validated with a program, the type must be one it accepts.
Name = Annotated[
    str,
    BeforeValidator(_event_type),
    WithJsonSchema({"type": "string", "pattern": _EVENT_TYPE.pattern}),
]

_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _local_time(value: Any) -> time:
    if isinstance(value, time):
        return value
    match = _TIME.match(value) if isinstance(value, str) else None
    if not match:
        raise problem(
            "local_time",
            f"{value!r} is not a time of day",
            'write 24-hour "HH:MM" in quotes, e.g. "09:00"',
        )
    return time(int(match.group(1)), int(match.group(2)))


#: A wall-clock time of day, "HH:MM", read in the member's (or a fixed) zone.
LocalTime = Annotated[
    time,
    BeforeValidator(_local_time),
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str),
    WithJsonSchema({"type": "string", "pattern": _TIME.pattern, "examples": ["09:00"]}),
]


@cache
def _zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _zone(value: str) -> str:
    if value == "member" or value in _zones():
        return value
    raise problem("zone", f"unknown time zone `{value}`", suggest(value, ("member", *_zones())))


#: ``member`` (each member's own zone) or an IANA zone name such as ``Europe/Warsaw``.
Zone = Annotated[
    str,
    AfterValidator(_zone),
    WithJsonSchema({"type": "string", "examples": ["member", "Europe/Warsaw", "America/New_York"]}),
]

#: Non-empty text.
Text = Annotated[str, Field(min_length=1)]

"""What the program knows that journeys refer to: its tiers, event types and http endpoints.

Validation reads them from the settings (``TIER_THRESHOLDS``, ``EVENT_TYPES``,
``HTTP_ENDPOINTS``), so
a journey is judged against the program it will run in. The models receive the
program through pydantic's validation context; without one (a stored version
parsed back) nothing is checked against it again.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationInfo

from loyalty.event_types import BUILTIN_TYPES, known_types
from loyalty.settings import Settings

from .fields import DEFAULT_TIERS

__all__ = ["Program", "program_of", "unknown_event_hint"]


@dataclass(frozen=True)
class Program:
    """Tier names from lowest to highest, every event type the program accepts, and the
    names of the endpoints `http` steps may call (None: not checked)."""

    tiers: tuple[str, ...] = DEFAULT_TIERS
    event_types: tuple[str, ...] = BUILTIN_TYPES
    http_endpoints: tuple[str, ...] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Program:
        """Tiers ranked by their lifetime-points threshold; built-in and declared event types;
        the configured http endpoints."""
        return cls(
            tiers_by_rank(settings.tier_thresholds),
            tuple(sorted(known_types(settings))),
            tuple(sorted(settings.http_endpoints)),
        )

    def context(self) -> dict[str, Any]:
        """The pydantic validation context that carries this program."""
        return {"program": self}


def tiers_by_rank(thresholds: Mapping[str, int]) -> tuple[str, ...]:
    """Tier names from the lowest threshold to the highest."""
    return tuple(sorted(thresholds, key=lambda tier: thresholds[tier]))


def program_of(info: ValidationInfo) -> Program | None:
    """The program the models are validated against, if any."""
    context = info.context
    program = context.get("program") if isinstance(context, dict) else None
    return program if isinstance(program, Program) else None


def unknown_event_hint(name: str, known: Collection[str]) -> str:
    """Did-you-mean for an event type, else where types come from."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return "known types: " + ", ".join(sorted(known)) + "; declare custom types in EVENT_TYPES"

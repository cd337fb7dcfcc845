"""The data a template sees, and the facts of a stored journey version that sending needs.

The names here are the variable contract that `automations.definition.variables`
checks templates against: a template that validates renders without undefined
variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from loyalty.models import JourneyVersion

__all__ = ["NamedJourney", "StoredJourney", "stored_journey", "template_data"]


class NamedJourney(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class StoredJourney:
    """What sending reads from a published version: names, default locale, templates."""

    id: str
    name: str
    locale: str
    #: "<locale>/<name>.<channel>" → the template text published with the version.
    templates: dict[str, str]


def stored_journey(version: JourneyVersion) -> StoredJourney:
    """The journey facts of a stored, immutable version (no parsing of the language)."""
    journey = version.definition["journey"]
    return StoredJourney(
        id=str(journey["id"]),
        name=str(journey["name"]),
        locale=str(journey.get("locale") or "en"),
        templates=dict(version.definition["templates"]),
    )


def template_data(
    member_fields: dict[str, Any],
    journey: NamedJourney,
    context: dict[str, Any],
    *,
    unsubscribe_url: str,
    survey_url: str | None,
    tier_name: str | None = None,
) -> dict[str, Any]:
    """The variables a template sees (the contract of automations.definition.variables).

    ``tier_name`` is the member's tier in the message's language (default: the tier's id).
    """
    data: dict[str, Any] = {
        "member": member_fields,
        "tier_name": tier_name if tier_name is not None else member_fields["tier"],
        "journey": {"id": journey.id, "name": journey.name},
        "occurrence": context.get("occurrence"),
        "event": context.get("event") or {},
        "points_expiring": member_fields["points_expiring"],
        "points_expiring_at": member_fields["points_expiring_at"],
        "award": context.get("award") or {"points": 0, "expires_at": None},
        "unsubscribe_url": unsubscribe_url,
    }
    if survey_url:
        data["survey_url"] = survey_url
    return data

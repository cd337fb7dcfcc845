"""The data a template sees, and the facts of a stored journey version that sending needs.

The names here are the variable contract that `automations.definition.variables`
checks templates against: a template that validates renders without undefined
variables.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from loyalty.db import per_transaction
from loyalty.models import JourneyVersion

__all__ = [
    "NamedJourney",
    "StoredJourney",
    "stored_journey",
    "stored_journeys",
    "template_data",
]


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


#: Stored journeys by content hash: a version's content never changes, so it is read once.
_by_digest: dict[str, StoredJourney] = {}
#: Where a transaction keeps the content hashes of versions it has read, by row id.
_DIGESTS_KNOWN = "template_data.digests"
#: The content hash of versions by row id (built once: every message sent reads it).
_DIGESTS = select(JourneyVersion.id, JourneyVersion.content_hash).where(
    JourneyVersion.id.in_(bindparam("version_ids", expanding=True))
)


def stored_journeys(session: Session, version_ids: Collection[int]) -> dict[int, StoredJourney]:
    """`stored_journey` of each version by row id; a definition read only the first time,
    and a version's content hash once per transaction (stored versions never change)."""
    known: dict[int, str] = per_transaction(session, _DIGESTS_KNOWN)
    unknown = [i for i in version_ids if i not in known]
    if unknown:
        known.update(session.execute(_DIGESTS, {"version_ids": unknown}).all())
    digests = {i: known[i] for i in version_ids if i in known}
    missing = {d for d in digests.values() if d not in _by_digest}
    if missing:
        for version in session.scalars(
            select(JourneyVersion).where(
                JourneyVersion.id.in_([i for i, d in digests.items() if d in missing])
            )
        ):
            _by_digest[version.content_hash] = stored_journey(version)
    return {version_id: _by_digest[digest] for version_id, digest in digests.items()}


def template_data(
    member_fields: Mapping[str, Any],
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
        "member": dict(member_fields),
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

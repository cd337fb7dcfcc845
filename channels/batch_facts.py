"""What a batch of claimed messages needs before it is checked and rendered, read for the
whole batch in a few queries instead of several per message: the stored journeys, the
members' data (with their expiring points and referrals) and the contact policy's
suppressions and capped sends.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from channels.compose import EnrollmentRow
from channels.policy import Known, MessageRow, known_for
from channels.template_data import StoredJourney, stored_journeys
from loyalty.db import among
from loyalty.members import MemberRow, members_data
from loyalty.models import Enrollment

__all__ = ["BatchFacts", "read_batch_facts"]


@dataclass(frozen=True)
class BatchFacts:
    #: The stored journey of each version the batch's enrollments are on, by version id.
    journeys: dict[int, StoredJourney]
    #: `member_data` by member id.
    members: dict[int, dict[str, Any]]
    policy: Known
    #: The messages' enrollments (their version and context) by id.
    enrollments: dict[int, EnrollmentRow]


#: What rendering reads of the batch's enrollments (built once: the ids go as a parameter).
_ENROLLMENTS = select(Enrollment.id, Enrollment.journey_version_id, Enrollment.context).where(
    among(Enrollment.id, "ids")
)


def read_batch_facts(
    session: Session,
    messages: Collection[MessageRow],
    members: Sequence[MemberRow],
    channel: str,
    *,
    now: datetime,
    public_base_url: str,
    default_zone: str,
) -> BatchFacts:
    """`BatchFacts` of messages of one channel whose members the caller holds (locked)."""
    ids = sorted({m.enrollment_id for m in messages if m.enrollment_id is not None})
    enrollments: dict[int, EnrollmentRow] = {
        row.id: row for row in session.execute(_ENROLLMENTS, {"ids": ids})
    }
    journeys = stored_journeys(session, {e.journey_version_id for e in enrollments.values()})
    data = members_data(
        session, members, now=now, public_base_url=public_base_url, default_zone=default_zone
    )
    return BatchFacts(journeys, data, known_for(session, members, channel, now=now), enrollments)

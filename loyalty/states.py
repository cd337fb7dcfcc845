"""The closed sets of values the database stores: message and enrollment states and the like.

Each is a `StrEnum`, so a member *is* its string: rows, JSON and logs carry the
plain value, and code compares and writes members instead of bare literals.
The tables refuse anything else through CHECK constraints built from these
values (`loyalty.models`, migration 0005); a test compares the two, so adding a
value here needs a migration that widens the constraint.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "IN_FLIGHT",
    "POSSIBLY_SENT",
    "CrmAnswer",
    "EnrollmentState",
    "EventState",
    "LedgerKind",
    "MessageState",
    "ReferralStatus",
    "SyncDirection",
    "sql_in",
]


class MessageState(StrEnum):
    """`messages.state`, the send state machine (DESIGN §6.4).

    pending → claimed → sent | unknown | failed; or, when claiming, suppressed
    (policy), failed (no address, rendering) or deferred (quiet hours) → pending.
    A retriable provider answer puts a claimed message back to pending until
    SEND_MAX_ATTEMPTS; `update_crm` rows go pending → sent | failed | suppressed.
    """

    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNKNOWN = "unknown"


#: Messages that may have reached the member (frequency caps, first-contact wording).
POSSIBLY_SENT = (MessageState.SENT, MessageState.UNKNOWN)


class EnrollmentState(StrEnum):
    """`enrollments.state`: a member's way through one journey occurrence."""

    ACTIVE = "active"
    WAITING = "waiting"
    COMPLETED = "completed"
    EXITED = "exited"
    CONVERTED = "converted"


#: Enrollments still on their way: an event may wake them, erasure ends them.
IN_FLIGHT = (EnrollmentState.ACTIVE, EnrollmentState.WAITING)


class ReferralStatus(StrEnum):
    """`referrals.status`: pending until the referee's first order; then held until the
    order's return window is over (review: a fraud check flagged it, a person decides);
    completed once the referrer is paid; rejected by a reviewer or a refund."""

    PENDING = "pending"
    HELD = "held"
    REVIEW = "review"
    COMPLETED = "completed"
    REJECTED = "rejected"


class LedgerKind(StrEnum):
    """`points_ledger.kind`."""

    EARN = "earn"
    REDEEM = "redeem"
    EXPIRE = "expire"
    ADJUST = "adjust"
    BONUS = "bonus"


class SyncDirection(StrEnum):
    """`sync_cursors.direction`: which way a CRM run went."""

    PUSH = "push"
    PULL = "pull"


class CrmAnswer(StrEnum):
    """What `message.decisions["crm"][crm]` holds for a CRM that took an `update_crm` row.

    Any other value there is that CRM's error text.
    """

    SENT = "sent"


class EventState(StrEnum):
    """Where a stored event stands. Not a column: see `processed_at`, `parked_at` and `error`."""

    QUEUED = "queued"
    PROCESSED = "processed"
    PARKED = "parked"


def sql_in(column: str, values: type[StrEnum]) -> str:
    """`column IN ('a', 'b', …)`, the body of a CHECK constraint over one of these sets."""
    quoted = ", ".join("'" + member.value.replace("'", "''") + "'" for member in values)
    return f"{column} IN ({quoted})"

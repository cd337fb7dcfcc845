"""The database tables (DESIGN §5). Later work only adds columns.

The members, ledger, journeys, messages, CRM and rewards tables are here; the access
tables are in `models_access`, what the console and metrics read in `models_tracking`,
redemptions and referral clicks and codes in `models_rewards`,
the base and column types in `model_base`; all are importable from here.

Columns holding a closed set of values (`loyalty.states`) carry a CHECK constraint.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.model_base import Base, Id, JSONType, UTCDateTime, member_fk, one_of
from loyalty.models_access import ApiToken, ConsoleUser, SignInFailure
from loyalty.models_rewards import Redemption, ReferralClick, ReferralFriendCode, RewardNotice
from loyalty.models_tracking import (
    ConsoleAction,
    EntryRefusal,
    JourneyPause,
    MessageCount,
    SchedulerTick,
    SplitChoice,
    StepCount,
)
from loyalty.states import (
    EnrollmentState,
    LedgerKind,
    MessageState,
    ReferralStatus,
    SyncDirection,
)

__all__ = [
    "WAITING_STATES",
    "ApiToken",
    "Base",
    "Consent",
    "ConsoleAction",
    "ConsoleUser",
    "CrmLink",
    "DeadLetter",
    "Enrollment",
    "EntryRefusal",
    "Event",
    "JSONType",
    "JourneyPause",
    "JourneyVersion",
    "LedgerEntry",
    "Member",
    "Message",
    "MessageCount",
    "ProviderEvent",
    "Redemption",
    "Referral",
    "ReferralClick",
    "ReferralFriendCode",
    "RetryWait",
    "RewardNotice",
    "SchedulerTick",
    "SignInFailure",
    "SplitChoice",
    "StepCount",
    "Suppression",
    "Survey",
    "SyncCursor",
    "UTCDateTime",
    "birthday_text",
]


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        Index("ix_members_birthday", "birth_month", "birth_day"),
        Index("ix_members_enrolled_at", "enrolled_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    first_name: Mapped[str | None] = mapped_column(String(255))
    last_name: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str | None] = mapped_column(String(16))
    time_zone: Mapped[str | None] = mapped_column(String(64))
    birth_month: Mapped[int | None]
    birth_day: Mapped[int | None]
    birth_year: Mapped[int | None]
    tier: Mapped[str] = mapped_column(String(32))
    points_balance: Mapped[int] = mapped_column(BigInteger, default=0)
    lifetime_points: Mapped[int] = mapped_column(BigInteger, default=0)
    referral_code: Mapped[str] = mapped_column(String(32), unique=True)
    referred_by_id: Mapped[int | None] = mapped_column(Id, ForeignKey("members.id"))
    orders_count: Mapped[int] = mapped_column(default=0)
    total_spent: Mapped[Decimal] = mapped_column(default=Decimal(0))
    last_order_at: Mapped[datetime | None]
    email_consent: Mapped[bool | None] = mapped_column(Boolean)
    sms_consent: Mapped[bool | None] = mapped_column(Boolean)
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: When the newest profile applied was made at its source (a shop's `updated_at`):
    #: a profile update made before it changes nothing.
    profile_as_of: Mapped[datetime | None]
    #: The digest of the row the last import applied, bound to `updated_at` then
    #: (`loyalty.import_writer`): an import skips a row it would find unchanged.
    import_digest: Mapped[str | None] = mapped_column(String(32))
    enrolled_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    erased_at: Mapped[datetime | None]

    @property
    def birthday(self) -> str | None:
        """`YYYY-MM-DD`, or `--MM-DD` when the year is unknown."""
        return birthday_text(self.birth_month, self.birth_day, self.birth_year)


def birthday_text(month: int | None, day: int | None, year: int | None) -> str | None:
    """A member's birthday as `YYYY-MM-DD`, or `--MM-DD` when the year is unknown."""
    if month is None or day is None:
        return None
    if year is None:
        return f"--{month:02d}-{day:02d}"
    return date(year, month, day).isoformat()


class Consent(Base):
    """Append-only consent log; the member row caches the latest marketing state."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = member_fk()
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class LedgerEntry(Base):
    """One points movement. Positive entries are lots that later entries consume FIFO."""

    __tablename__ = "points_ledger"
    __table_args__ = (
        Index("ix_points_ledger_expires_at", "expires_at"),
        one_of("kind", LedgerKind),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = member_fk()
    delta: Mapped[int] = mapped_column(BigInteger)
    #: A LedgerKind.
    kind: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    expires_at: Mapped[datetime | None]
    remaining: Mapped[int] = mapped_column(BigInteger, default=0)
    event_id: Mapped[int | None] = mapped_column(Id, ForeignKey("events.id"))
    created_at: Mapped[datetime]


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("source", "external_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64), index=True)
    member_id: Mapped[int] = member_fk()
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None] = mapped_column(index=True)
    error: Mapped[str | None] = mapped_column(Text)
    #: Set when processing failed for good: the event no longer holds the member's
    #: later events, the relay leaves it, and `loyalty dlq replay` takes it up again.
    parked_at: Mapped[datetime | None]


class JourneyVersion(Base):
    """An immutable published version of one journey definition."""

    __tablename__ = "journey_versions"
    __table_args__ = (UniqueConstraint("journey_id", "version"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int]
    content_hash: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]]
    published_at: Mapped[datetime]


class Enrollment(Base):
    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("journey_id", "member_id", "occurrence"),
        # The console's per-journey figures: in flight and waiting per step, entries by day.
        Index("ix_enrollments_journey_state_step", "journey_id", "state", "current_step"),
        Index("ix_enrollments_journey_entered", "journey_id", "entered_at"),
        Index("ix_enrollments_journey_converted", "journey_id", "converted_at"),
        one_of("state", EnrollmentState),
        Index("ix_enrollments_variant", "journey_id", "variant"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[int] = member_fk()
    occurrence: Mapped[str] = mapped_column(String(128))
    journey_version_id: Mapped[int] = mapped_column(Id, ForeignKey("journey_versions.id"))
    #: An EnrollmentState.
    state: Mapped[str] = mapped_column(String(16))
    current_step: Mapped[str | None] = mapped_column(String(128))
    next_run_at: Mapped[datetime | None] = mapped_column(index=True)
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    entered_at: Mapped[datetime]
    exited_at: Mapped[datetime | None]
    exit_reason: Mapped[str | None] = mapped_column(String(64))
    converted_at: Mapped[datetime | None]
    #: The split variant the member got (its name, or `holdout`); reports count by it.
    variant: Mapped[str | None] = mapped_column(String(64))
    #: Set when a run failed for good (a dead letter): the wake-up tick leaves it until
    #: `loyalty dlq replay` clears it.
    parked_at: Mapped[datetime | None]


#: Messages that wait to go out: the predicate of the partial index `ix_messages_due`.
WAITING_STATES = "state IN ('pending', 'deferred')"


class Message(Base):
    """The outbox: one row per message, unique per (enrollment, step)."""

    __tablename__ = "messages"
    __table_args__ = (
        one_of("state", MessageState),
        # The console's per-step figures and its message list (newest first, per journey).
        Index("ix_messages_journey_step_state", "journey_id", "step_id", "state"),
        Index("ix_messages_created_at", "created_at"),
        # The due outbox of /metrics, read from the index alone (migration 0015).
        Index(
            "ix_messages_due",
            "channel",
            "next_attempt_at",
            "created_at",
            postgresql_where=text(WAITING_STATES),
            sqlite_where=text(WAITING_STATES),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    enrollment_id: Mapped[int | None] = mapped_column(Id, ForeignKey("enrollments.id"), index=True)
    member_id: Mapped[int] = member_fk()
    journey_id: Mapped[str | None] = mapped_column(String(128))
    step_id: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(16))
    template: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str | None] = mapped_column(String(16))
    #: A MessageState.
    state: Mapped[str] = mapped_column(String(16), index=True)
    provider_id: Mapped[str | None] = mapped_column(String(128), index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    cost: Mapped[Decimal | None] = mapped_column(Numeric(14, 4))
    segments: Mapped[int | None]
    decisions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    #: When the provider request of the current attempt left (set, and committed, just
    #: before it is sent). A claim without it never reached the provider.
    request_at: Mapped[datetime | None]
    #: The provider's latest word on it: delivered, bounced, opened, clicked, undelivered…
    provider_status: Mapped[str | None] = mapped_column(String(32))
    provider_status_at: Mapped[datetime | None]
    #: Names this message (and so its member) in the one-click unsubscribe link.
    unsubscribe_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: The latest open (a click counts as one) and click the provider reported.
    last_opened_at: Mapped[datetime | None]
    last_clicked_at: Mapped[datetime | None]


class Suppression(Base):
    """An address we must not contact on a channel (bounce, spam report, STOP, unsubscribe)."""

    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class ProviderEvent(Base):
    """A webhook delivery, kept once per provider event id."""

    __tablename__ = "provider_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id"),
        # A message's delivery events, for the console's message page.
        Index("ix_provider_events_message_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_event_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
    applied_at: Mapped[datetime | None]
    #: The message a delivery event or status callback is about, when it is one of ours.
    message_id: Mapped[int | None] = mapped_column(Id)


class CrmLink(Base):
    __tablename__ = "crm_links"
    __table_args__ = (UniqueConstraint("member_id", "crm"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = member_fk()
    crm: Mapped[str] = mapped_column(String(32))
    crm_id: Mapped[str | None] = mapped_column(String(64))
    pushed_hash: Mapped[str | None] = mapped_column(String(64))
    pushed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    error_at: Mapped[datetime | None]
    #: The mapped values last accepted by the CRM, so a pull can tell whose edit is newer.
    pushed_values: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    #: Values the CRM refused for good; not sent again until they change.
    failed_hash: Mapped[str | None] = mapped_column(String(64))


class SyncCursor(Base):
    __tablename__ = "sync_cursors"
    __table_args__ = (one_of("direction", SyncDirection),)

    crm: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: A SyncDirection.
    direction: Mapped[str] = mapped_column(String(16), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(String(255))
    last_run_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    #: Runs in a row that the CRM refused (bad credentials, missing fields): the
    #: scheduler waits longer before each next try, and a run that lands resets it.
    refusals: Mapped[int] = mapped_column(default=0, server_default="0")


class Referral(Base):
    __tablename__ = "referrals"
    __table_args__ = (one_of("status", ReferralStatus),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    referrer_id: Mapped[int] = member_fk()
    referee_id: Mapped[int] = mapped_column(Id, ForeignKey("members.id"), unique=True)
    code: Mapped[str] = mapped_column(String(32))
    #: A ReferralStatus.
    status: Mapped[str] = mapped_column(String(16))
    fraud_verdict: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    #: The referee's first order (its shop id) and when it was placed.
    order_id: Mapped[str | None] = mapped_column(String(64))
    ordered_at: Mapped[datetime | None]
    #: Paid by the scheduler once this has passed (the order's return window).
    hold_until: Mapped[datetime | None] = mapped_column(index=True)
    #: Every fraud check that flagged it, comma separated (self_referral, same_email…).
    reasons: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None]
    #: What the reviewer (or a refund) said.
    review_note: Mapped[str | None] = mapped_column(Text)


class Survey(Base):
    __tablename__ = "surveys"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = member_fk()
    enrollment_id: Mapped[int | None] = mapped_column(Id, ForeignKey("enrollments.id"))
    kind: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(16))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    score: Mapped[int | None]
    comment: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]


class DeadLetter(Base):
    """A worker message that failed for good; replayable with `loyalty dlq replay`."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    queue: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    args: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)
    failed_at: Mapped[datetime]
    replayed_at: Mapped[datetime | None]


class RetryWait(Base):
    """A worker's retry of one row's job, queued with a delay: until it is due (and a
    relay interval after), the scheduler's relay leaves the row to it."""

    __tablename__ = "retry_waits"

    actor: Mapped[str] = mapped_column(String(128), primary_key=True)
    row_id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=False)
    due_at: Mapped[datetime]

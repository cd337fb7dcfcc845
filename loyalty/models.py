"""The database tables (DESIGN §5). Later work only adds columns.

Columns holding a closed set of values (`loyalty.states`) carry a CHECK constraint.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from loyalty.rewards import RedemptionState
from loyalty.states import (
    EnrollmentState,
    LedgerKind,
    MessageState,
    ReferralStatus,
    SyncDirection,
    sql_in,
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
    "birthday_text",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")
Money = Numeric(14, 2)
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
Id = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, Decimal: Money}


def _one_of(column: str, values: type[StrEnum]) -> CheckConstraint:
    """CHECK that `column` holds one of `values`; named ck_<table>_<column>."""
    return CheckConstraint(sql_in(column, values), name=column)


def _member_fk() -> Mapped[int]:
    return mapped_column(Id, ForeignKey("members.id"), index=True)


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
    member_id: Mapped[int] = _member_fk()
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
        _one_of("kind", LedgerKind),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = _member_fk()
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
    member_id: Mapped[int] = _member_fk()
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
        _one_of("state", EnrollmentState),
        Index("ix_enrollments_variant", "journey_id", "variant"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[int] = _member_fk()
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
        _one_of("state", MessageState),
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
    member_id: Mapped[int] = _member_fk()
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
    member_id: Mapped[int] = _member_fk()
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
    __table_args__ = (_one_of("direction", SyncDirection),)

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
    __table_args__ = (_one_of("status", ReferralStatus),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    referrer_id: Mapped[int] = _member_fk()
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
    member_id: Mapped[int] = _member_fk()
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


class ApiToken(Base):
    """A bearer token for /api/v1: only its SHA-256 hash is kept, shown once at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The scopes it grants, e.g. ["events:write", "members:read"].
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Redemption(Base):
    """Points turned into a reward: taken once per (member, idempotency key), then a shop code.

    pending → issued (the shop has the code) | failed (the shop refused it; points returned).
    """

    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key"),
        CheckConstraint(sql_in("state", RedemptionState), name="state"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = _member_fk()
    idempotency_key: Mapped[str] = mapped_column(String(255))
    reward_id: Mapped[str] = mapped_column(String(64))
    #: The reward's kind at redemption time (fixed_amount, percentage, free_shipping).
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger)
    #: A RedemptionState.
    state: Mapped[str] = mapped_column(String(16), index=True)
    code: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: The amount off (fixed_amount, in `currency`) or the percent off (percentage).
    value: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    currency: Mapped[str | None] = mapped_column(String(3))
    expires_at: Mapped[datetime]
    #: Where the code lives: shopify, woocommerce, or local (no shop configured).
    shop: Mapped[str | None] = mapped_column(String(32))
    #: The shop's id of the code (a Shopify discount gid, a WooCommerce coupon id).
    shop_code_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    issued_at: Mapped[datetime | None]


class RewardNotice(Base):
    """Whether a member's balance stands at a reward's cost: `reward.available` once per rise."""

    __tablename__ = "reward_notices"
    __table_args__ = (UniqueConstraint("member_id", "reward_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = _member_fk()
    reward_id: Mapped[str] = mapped_column(String(64))
    reached: Mapped[bool] = mapped_column(Boolean)
    #: How many times the balance rose to the cost; names each `reward.available` event.
    crossings: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime]


class ReferralClick(Base):
    """One visit of a referral link: when, and digests (never the raw values) of who."""

    __tablename__ = "referral_clicks"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    referrer_id: Mapped[int] = _member_fk()
    code: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(index=True)
    #: Keyed digests of the visitor's IP address and user agent.
    ip_hash: Mapped[str | None] = mapped_column(String(64))
    user_agent_hash: Mapped[str | None] = mapped_column(String(64))


class ReferralFriendCode(Base):
    """The discount a referrer's link gives friends: one per referrer, derived from their code.

    pending → issued (the shop has it) | failed (the shop refused it for good).
    """

    __tablename__ = "referral_friend_codes"
    __table_args__ = (CheckConstraint(sql_in("state", RedemptionState), name="state"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    referrer_id: Mapped[int] = mapped_column(Id, ForeignKey("members.id"), unique=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    reward_id: Mapped[str] = mapped_column(String(64))
    #: A RedemptionState.
    state: Mapped[str] = mapped_column(String(16))
    #: shopify, woocommerce, or local (no shop configured).
    shop: Mapped[str | None] = mapped_column(String(32))
    shop_code_id: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    issued_at: Mapped[datetime | None]


class ConsoleUser(Base):
    """A person who signs in to the console; apart from the API tokens of /api/v1."""

    __tablename__ = "console_users"
    __table_args__ = (CheckConstraint("role IN ('viewer', 'marketer', 'operator')", name="role"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    #: Lower case; the sign-in name.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    #: An argon2id hash (argon2-cffi's encoded form, parameters included).
    password_hash: Mapped[str] = mapped_column(String(255))
    #: viewer < marketer < operator (`loyalty.users.Role`).
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    last_sign_in_at: Mapped[datetime | None]
    #: A disabled user cannot sign in, and their open sessions stop working.
    disabled_at: Mapped[datetime | None]


class SignInFailure(Base):
    """A failed console sign-in, by a digest of (email, address); counted to slow guessing."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class JourneyPause(Base):
    """A journey stopped from the console: while `paused_at` is set, no new member enters."""

    __tablename__ = "journey_pauses"

    journey_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    paused_at: Mapped[datetime | None]
    paused_by: Mapped[str | None] = mapped_column(String(320))
    resumed_at: Mapped[datetime | None]
    resumed_by: Mapped[str | None] = mapped_column(String(320))


class ConsoleAction(Base):
    """What a console user did (pause, resume, replay…), who and when: append-only."""

    __tablename__ = "console_actions"
    __table_args__ = (Index("ix_console_actions_target", "target", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    at: Mapped[datetime]
    user_email: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(32))
    #: What it was done to: `journey:<id>`, `dead_letter:<id>`.
    target: Mapped[str] = mapped_column(String(160))


class EntryRefusal(Base):
    """Why a member last did not enter a journey when it was offered (audience, cooldown,
    paused): one row per (journey, member), rewritten only when the answer changes."""

    __tablename__ = "entry_refusals"
    __table_args__ = (UniqueConstraint("member_id", "journey_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[int] = mapped_column(Id, ForeignKey("members.id"))
    occurrence: Mapped[str] = mapped_column(String(128))
    #: audience, cooldown or paused.
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime]


class StepCount(Base):
    """How many enrollments entered a journey's step, kept in the step's own transaction.

    Spread over a few shards by enrollment id, so workers running the same step at
    once do not queue on one row; the console adds the shards up.
    """

    __tablename__ = "journey_step_counts"

    journey_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    step_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entered: Mapped[int] = mapped_column(BigInteger, default=0)


class SchedulerTick(Base):
    """The last run of each scheduler job, written by the leader: the console shows it."""

    __tablename__ = "scheduler_ticks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Which scheduler ran it (host:pid:token).
    holder: Mapped[str] = mapped_column(String(160))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    queued: Mapped[int] = mapped_column(default=0)
    #: The exception's type when the run failed; None when it ran through.
    error: Mapped[str | None] = mapped_column(String(160))


class MessageCount(Base):
    """Messages per (journey, step, channel, state, suppression reason), kept by a trigger on
    `messages` (migration 0015, on PostgreSQL and SQLite) in the transaction that inserts,
    changes or deletes each row, so that the console's per-step figures and `/metrics` do not
    count millions of rows. A message of no journey counts under journey and step ''.

    A counter is spread over shards (one per database connection, modulo 8), each holding
    a part that may go below zero; a figure is the sum of its shards.
    """

    __tablename__ = "message_counts"

    journey_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    step_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: The first 64 characters of the error of a `suppressed` message (the rule that
    #: stopped it); empty for the other states.
    reason: Mapped[str] = mapped_column(String(64), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class SplitChoice(Base):
    """The variant (or `holdout`) an enrollment got at each split step it went through, written
    in the transaction that runs the split; reports count each split by it."""

    __tablename__ = "split_choices"
    __table_args__ = (Index("ix_split_choices_journey_split", "journey_id", "split_id", "variant"),)

    enrollment_id: Mapped[int] = mapped_column(
        Id, ForeignKey("enrollments.id"), primary_key=True, autoincrement=False
    )
    split_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str] = mapped_column(String(64))

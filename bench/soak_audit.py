"""What a soak checks at the end: what the program did, row by row.

The database is compared with what the provider emulators recorded
(`bench.soak_progress`'s logs, which also tell whether the program has gone quiet).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from automations.definition import (
    END,
    AwardPoints,
    Branch,
    DateTrigger,
    EventTrigger,
    Journey,
    SendEmail,
    SendSms,
    SendSurvey,
    Split,
    UpdateCrm,
    Wait,
    evaluate,
)
from automations.definition import Context as ConditionContext
from automations.enrollments import occurrence_key
from automations.triggers.date_scan import due_date_entries
from automations.versions import latest_versions, load_version
from bench.soak_data import OrderLog
from bench.soak_progress import (
    CHANNELS,
    Progress,
    ProviderLog,
    progress,
    sendgrid_log,
    twilio_log,
)
from loyalty.db import Database
from loyalty.members import member_data, member_zone
from loyalty.models import (
    Enrollment,
    Event,
    JourneyVersion,
    LedgerEntry,
    Member,
    Message,
    Referral,
)
from loyalty.settings import Settings
from loyalty.states import EnrollmentState, LedgerKind, MessageState, ReferralStatus

__all__ = [
    "Findings",
    "Progress",
    "ProviderLog",
    "audit",
    "progress",
    "sendgrid_log",
    "twilio_log",
]

#: States in which the database says a message left (a claim: once its request left).
SHOULD_HAVE_LEFT = (MessageState.SENT, MessageState.UNKNOWN, MessageState.CLAIMED)


# -- the figures ----------------------------------------------------------------------


@dataclass
class Findings:
    members: int = 0
    referred: int = 0
    events: int = 0
    events_processed: int = 0
    events_with_error: int = 0
    messages_by_channel: Counter[str] = field(default_factory=Counter)
    messages_by_state: Counter[str] = field(default_factory=Counter)
    #: (message id, channel, state) that should have reached a provider and did not.
    never_received: list[tuple[int, str, str]] = field(default_factory=list)
    #: (enrollment id, step) a journey passed without the message or points it decides.
    steps_without_effect: list[tuple[int, str]] = field(default_factory=list)
    #: (journey, member external id, why) where a journey should have started and did not.
    journeys_not_entered: list[tuple[str, str, str]] = field(default_factory=list)
    #: How many journey steps with an effect and how many triggering events were checked.
    steps_checked: int = 0
    entries_checked: int = 0
    duplicated: dict[str, dict[int, int]] = field(default_factory=dict)
    ledger: dict[str, list[str]] = field(default_factory=dict)
    #: (message id, channel, whether its request left, times a provider accepted it) of
    #: messages still claimed at the end.
    stuck_claimed: list[tuple[int, str, bool, int]] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    unknown_dropped: int = 0
    #: Accepted by a provider while the database says it never went (pending, failed...).
    accepted_not_recorded: list[tuple[int, str]] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return (
            len(self.never_received)
            + len(self.steps_without_effect)
            + len(self.journeys_not_entered)
        )

    @property
    def duplicated_count(self) -> int:
        return sum(len(ids) for ids in self.duplicated.values())

    @property
    def ledger_count(self) -> int:
        return sum(len(found) for found in self.ledger.values())


def audit(
    database: Database,
    settings: Settings,
    now: datetime,
    providers: dict[str, ProviderLog],
    orders: dict[str, OrderLog],
) -> Findings:
    """Every figure of the soak's report."""
    found = Findings()
    with database.sessions() as session:
        found.members = session.scalar(select(func.count(Member.id))) or 0
        found.referred = session.scalar(select(func.count(Referral.id))) or 0
        found.events = session.scalar(select(func.count(Event.id))) or 0
        found.events_processed = (
            session.scalar(select(func.count()).where(Event.processed_at.is_not(None))) or 0
        )
        found.events_with_error = (
            session.scalar(select(func.count()).where(Event.error.is_not(None))) or 0
        )
        _messages(session, found, providers)
        _decisions(session, found)
        _entries(session, settings, now, found)
        _ledger(session, found, orders)
    found.duplicated = {channel: log.duplicated for channel, log in providers.items()}
    return found


def _messages(session: Session, found: Findings, providers: dict[str, ProviderLog]) -> None:
    rows = session.execute(
        select(Message.id, Message.channel, Message.state, Message.request_at).where(
            Message.channel.in_(CHANNELS)
        )
    ).all()
    for message_id, channel, state, request_at in rows:
        found.messages_by_channel[channel] += 1
        found.messages_by_state[state] += 1
        accepted = providers[channel].accepted.get(message_id, 0)
        # A claim whose request never left is not lost: the product returns it to pending
        # once its lease is over. It still counts as stuck claimed.
        left = state != MessageState.CLAIMED or request_at is not None
        if state in SHOULD_HAVE_LEFT and left and not accepted:
            found.never_received.append((message_id, channel, state))
        if state not in SHOULD_HAVE_LEFT and accepted:
            found.accepted_not_recorded.append((message_id, state))
        if state == MessageState.CLAIMED:
            found.stuck_claimed.append((message_id, channel, request_at is not None, accepted))
        if state == MessageState.UNKNOWN:
            found.unknown.append(message_id)
            found.unknown_dropped += message_id in providers[channel].dropped


def _walk(journey: Journey, enrollment: Enrollment) -> list[str]:
    """The steps this enrollment has run, as far as its notes tell (a wait ends the walk)."""
    finished = enrollment.state not in (EnrollmentState.ACTIVE, EnrollmentState.WAITING)
    # Reaching the goal stops an enrollment where it stands: its current step did not run.
    stopped_before = enrollment.state == EnrollmentState.CONVERTED
    notes = enrollment.context.get("notes", {})
    ran: list[str] = []
    step_id = journey.steps[0].id
    while step_id != END and step_id not in ran:
        if step_id == enrollment.current_step:
            if (finished and not stopped_before) or enrollment.state == EnrollmentState.WAITING:
                ran.append(step_id)
            break
        ran.append(step_id)
        step = journey.step(step_id)
        note = notes.get(step_id, {})
        if isinstance(step, Wait):
            break  # where it went after waking is not recorded
        if isinstance(step, Branch):
            if "branch" not in note:
                break
            step_id = step.then if note["branch"] == "then" else (step.else_ or "")
            step_id = step_id or journey.following(step.id)
        elif isinstance(step, Split):
            variant = next((v for v in step.variants if v.name == note.get("variant")), None)
            if variant is None:
                break
            step_id = variant.next
        else:
            step_id = journey.following(step_id)
    return ran


def _decisions(session: Session, found: Findings) -> None:
    """Every send, survey, CRM update or award a journey passed left its row behind."""
    effects = (SendEmail, SendSms, SendSurvey, UpdateCrm, AwardPoints)
    versions: dict[int, Journey] = {}
    message_keys = set(session.scalars(select(Message.idempotency_key)))
    ledger_keys = set(
        session.scalars(
            select(LedgerEntry.idempotency_key).where(
                LedgerEntry.idempotency_key.like("enrollment:%")
            )
        )
    )
    for enrollment in session.scalars(select(Enrollment)):
        version = versions.get(enrollment.journey_version_id)
        if version is None:
            row = session.get(JourneyVersion, enrollment.journey_version_id)
            assert row is not None
            version = versions[enrollment.journey_version_id] = load_version(row).journey
        for step_id in _walk(version, enrollment):
            step = version.step(step_id)
            if not isinstance(step, effects):
                continue
            key = f"enrollment:{enrollment.id}:{step_id}"
            found.steps_checked += 1
            if isinstance(step, AwardPoints):
                if key not in ledger_keys and any(
                    step.points_for(tier) for tier in ("bronze", "silver", "gold", "default")
                ):
                    found.steps_without_effect.append((enrollment.id, step_id))
            elif key not in message_keys:
                found.steps_without_effect.append((enrollment.id, step_id))


def _entries(session: Session, settings: Settings, now: datetime, found: Findings) -> None:
    """Journeys that should have started and did not.

    Date journeys: whoever the product's own scan still finds due. Event journeys
    without an audience or cooldown: every processed, accepted event their trigger
    matches (conditions on the event alone).
    """
    for version in latest_versions(session):
        published = load_version(version)
        journey = published.journey
        trigger = journey.trigger
        if journey.status != "active":
            continue
        if isinstance(trigger, DateTrigger):
            for due in due_date_entries(session, journey.id, trigger, now, settings):
                member = session.get(Member, due.member_id)
                name = member.external_id if member else str(due.member_id)
                found.journeys_not_entered.append((journey.id, name, "date still due"))
            continue
        if not isinstance(trigger, EventTrigger) or journey.audience or journey.entry.cooldown:
            continue
        enrolled = set(
            session.execute(
                select(Enrollment.member_id, Enrollment.occurrence).where(
                    Enrollment.journey_id == journey.id
                )
            ).all()
        )
        events = session.scalars(
            select(Event).where(
                Event.type == trigger.event,
                Event.processed_at.is_not(None),
                Event.error.is_(None),
            )
        )
        for event in events:
            member = session.get(Member, event.member_id)
            if member is None or member.erased_at is not None:
                continue
            at = event.processed_at or event.received_at
            if trigger.conditions is not None:
                data = member_data(
                    session,
                    member,
                    now=at,
                    public_base_url="",
                    default_zone=settings.default_time_zone,
                )
                context = ConditionContext(member=data, now=at, event=event.payload)
                if not evaluate(trigger.conditions, context):
                    continue
            found.entries_checked += 1
            key = occurrence_key(
                journey,
                now=at,
                zone=member_zone(member, settings),
                occurrence=f"event:{event.id}",
            )
            if (member.id, key) not in enrolled:
                found.journeys_not_entered.append(
                    (journey.id, member.external_id, f"event {event.external_id}")
                )


def _ledger(session: Session, found: Findings, orders: dict[str, OrderLog]) -> None:
    """Effects applied twice: the unique keys guard each entry, these guard the business."""
    ledger: dict[str, list[str]] = {
        "earned twice for one order": [],
        "clawed back beyond the refunds": [],
        "entered a once-only journey twice": [],
        "referral rewards beyond referrals": [],
        "balance not the sum of entries": [],
        "order count not the orders earned": [],
    }
    earn = LedgerKind.EARN
    for reason, count in session.execute(
        select(LedgerEntry.reason, func.count())
        .where(LedgerEntry.kind == earn)
        .group_by(LedgerEntry.reason)
        .having(func.count() > 1)
    ):
        ledger["earned twice for one order"].append(f"{reason} x{count}")
    earned = dict(
        session.execute(
            select(LedgerEntry.idempotency_key, LedgerEntry.delta).where(LedgerEntry.kind == earn)
        ).all()
    )
    clawed: Counter[str] = Counter()
    for key, delta in session.execute(
        select(LedgerEntry.idempotency_key, LedgerEntry.delta).where(
            LedgerEntry.idempotency_key.like("order:%:refund:%")
        )
    ):
        clawed[key.split(":refund:", 1)[0].removeprefix("order:")] -= delta
    for order_id, taken in clawed.items():
        points = int(earned.get(f"order:{order_id}:earn", 0))
        order = orders.get(order_id)
        ceiling = order.clawback_ceiling(points) if order else points
        if taken > ceiling:
            ledger["clawed back beyond the refunds"].append(f"{order_id}: {taken} > {ceiling}")
    _journey_bonuses(session, ledger)
    sums = dict(
        session.execute(
            select(LedgerEntry.member_id, func.sum(LedgerEntry.delta)).group_by(
                LedgerEntry.member_id
            )
        ).all()
    )
    orders_earned = Counter(
        session.scalars(select(LedgerEntry.member_id).where(LedgerEntry.kind == earn))
    )
    for member_id, external_id, balance, orders_count in session.execute(
        select(Member.id, Member.external_id, Member.points_balance, Member.orders_count)
    ):
        if balance != int(sums.get(member_id, 0) or 0):
            ledger["balance not the sum of entries"].append(
                f"{external_id}: {balance} != {sums.get(member_id, 0)}"
            )
        if orders_count != orders_earned[member_id]:
            ledger["order count not the orders earned"].append(
                f"{external_id}: {orders_count} != {orders_earned[member_id]}"
            )
    found.ledger = ledger


def _journey_bonuses(session: Session, ledger: dict[str, list[str]]) -> None:
    """Journey awards: once per enrollment and step, one enrollment per entry rule."""
    enrollments = {
        e.id: e
        for e in session.scalars(select(Enrollment))  # a soak holds a few thousand at most
    }
    journeys = {v.journey_id: load_version(v).journey for v in latest_versions(session)}
    awards: Counter[tuple[str, int]] = Counter()
    for key in session.scalars(
        select(LedgerEntry.idempotency_key).where(LedgerEntry.kind == LedgerKind.BONUS)
    ):
        _, enrollment_id, _step = key.split(":", 2)
        enrollment = enrollments[int(enrollment_id)]
        awards[(enrollment.journey_id, enrollment.member_id)] += 1
    per_member = Counter((e.journey_id, e.member_id) for e in enrollments.values())
    for (journey_id, member_id), count in per_member.items():
        journey = journeys.get(journey_id)
        if journey is not None and (journey.entry.once or journey.entry.once_per) and count > 1:
            ledger["entered a once-only journey twice"].append(f"{journey_id} member {member_id}")
    referrals = Counter(
        session.scalars(
            select(Referral.referrer_id).where(Referral.status == ReferralStatus.COMPLETED)
        )
    )
    for (journey_id, member_id), count in awards.items():
        if journey_id == "referral_reward" and count > referrals[member_id]:
            ledger["referral rewards beyond referrals"].append(
                f"member {member_id}: {count} > {referrals[member_id]}"
            )

"""What the scheduler's periodic jobs do: find due work and queue it, nothing more.

Each tick is safe to run twice or on two machines at once: the actors it
queues act only when the rows say so. Rows found due together are queued a batch
per message (`actors.send_batches`): a batch actor does each row as its own actor
would, and queues one that fails to that actor alone, with its retries and dead letter.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update

from automations.runtime import actors
from automations.triggers.entry_batches import worker_threads
from loyalty.app import App
from loyalty.errors import ConfigError
from loyalty.models import Enrollment, Event, LedgerEntry, Message, Redemption
from loyalty.retry_waits import forget_retries, no_retry_waiting, note_queued
from loyalty.rewards import RedemptionState
from loyalty.settings import Settings
from loyalty.states import EnrollmentState, MessageState, SyncDirection

__all__ = ["TICKS", "Tick", "check_tick_settings"]

#: Rows a tick queues at most per run; the next run takes the rest.
TICK_BATCH = 5000


@dataclass(frozen=True)
class Tick:
    name: str
    seconds: int
    run: Callable[[App], int]
    description: str
    #: A setting in minutes that overrides `seconds`.
    minutes_setting: str | None = None

    def interval(self, settings: Settings) -> int:
        """SCHEDULER_TICK_SECONDS first, then the tick's own minutes setting, then its default."""
        if self.name in settings.scheduler_tick_seconds:
            return settings.scheduler_tick_seconds[self.name]
        if self.minutes_setting is None:
            return self.seconds
        return int(getattr(settings, self.minutes_setting)) * 60


def check_tick_settings(settings: Settings) -> None:
    """Refuse a SCHEDULER_TICK_SECONDS that names a job the scheduler does not have."""
    names = [tick.name for tick in TICKS]
    unknown = sorted(set(settings.scheduler_tick_seconds) - set(names))
    if unknown:
        raise ConfigError(
            f"SCHEDULER_TICK_SECONDS names no scheduler job {', '.join(map(repr, unknown))}; "
            f"the jobs are {', '.join(names)}"
        )


def _relay_cutoff(app: App) -> datetime:
    """Rows older than this and still waiting were queued once and lost (with Redis, say)."""
    return app.clock.now() - timedelta(seconds=app.settings.event_relay_after_seconds)


def _queue_ids(app: App, actor: str, id_column: Any, *waiting: ColumnElement[bool]) -> int:
    """Queue to `actor` the first TICK_BATCH ids of the rows that match `waiting`."""
    with app.database.sessions() as session:
        ids = session.scalars(
            select(id_column).where(*waiting).order_by(id_column).limit(TICK_BATCH)
        ).all()
    actors.send_batches(actor, ids, spread=worker_threads(app))
    return len(ids)


def relay_events(app: App) -> int:
    """Queue stored events that no worker has processed (lost with Redis, say); not parked ones.

    Notes of delayed retries that no longer hold anything back are dropped on the way.
    """
    with app.database.transaction() as session:
        forget_retries(session, _relay_cutoff(app))
    return _queue_ids(
        app,
        "process_event",
        Event.id,
        Event.processed_at.is_(None),
        Event.parked_at.is_(None),
        Event.received_at <= _relay_cutoff(app),
        no_retry_waiting("process_event", Event.id, _relay_cutoff(app)),
    )


def expire_points(app: App) -> int:
    """Queue an expiry for each member holding a lot past its expiry, a batch per message."""
    with app.database.sessions() as session:
        member_ids = session.scalars(
            select(LedgerEntry.member_id)
            .where(LedgerEntry.remaining > 0, LedgerEntry.expires_at <= app.clock.now())
            .distinct()
            .order_by(LedgerEntry.member_id)
            .limit(TICK_BATCH)
        ).all()
    actors.send_batches("expire_points", member_ids, spread=worker_threads(app))
    return len(member_ids)


def wake_enrollments(app: App) -> int:
    """Queue enrollments whose wait is over, and running ones that stalled (a lost message)."""
    now = app.clock.now()
    stalled = now - timedelta(seconds=app.settings.event_relay_after_seconds)
    waiting, active = EnrollmentState.WAITING, EnrollmentState.ACTIVE
    with app.database.sessions() as session:
        ids = session.scalars(
            select(Enrollment.id)
            .where(
                or_(
                    and_(Enrollment.state == waiting, Enrollment.next_run_at <= now),
                    and_(Enrollment.state == active, Enrollment.next_run_at <= stalled),
                ),
                Enrollment.parked_at.is_(None),
                no_retry_waiting(
                    "run_enrollment", Enrollment.id, stalled, since=Enrollment.next_run_at
                ),
            )
            .order_by(Enrollment.next_run_at)
            .limit(TICK_BATCH)
        ).all()
    actors.send_batches("run_enrollment", ids, spread=worker_threads(app))
    # Queued: the next ticks leave them to these messages (a relay interval, for lost ones).
    if ids:
        with app.database.transaction() as session:
            note_queued(session, "run_enrollment", ids, now)
    return len(ids)


def relay_messages(app: App) -> int:
    """Queue messages whose time has come: deferred past quiet hours, retries, lost ones."""
    from automations.deliveries import retry_unknown
    from channels.delivery import settle_stale
    from channels.retries import DELIVERED_CHANNELS

    now = app.clock.now()
    cutoff = now - timedelta(seconds=app.settings.event_relay_after_seconds)
    with app.database.transaction() as session:
        session.execute(
            update(Message)
            .where(Message.state == MessageState.DEFERRED, Message.next_attempt_at <= now)
            .values(state=MessageState.PENDING, updated_at=now)
        )
        ids = session.scalars(
            select(Message.id)
            .where(
                Message.state == MessageState.PENDING,
                Message.channel.in_(DELIVERED_CHANNELS),
                or_(
                    Message.next_attempt_at <= now,
                    and_(Message.next_attempt_at.is_(None), Message.created_at <= cutoff),
                ),
            )
            .order_by(Message.id)
            .limit(TICK_BATCH)
        ).all()
    settle_stale(app)
    ids = [*ids, *retry_unknown(app)]
    actors.send_batches("deliver_message", ids, spread=worker_threads(app))
    return len(ids)


def relay_shop_deliveries(app: App) -> int:
    """Queue stored shop webhook deliveries that no worker has applied."""
    from automations.shop_deliveries import pending_deliveries

    after = timedelta(seconds=app.settings.event_relay_after_seconds)
    ids = pending_deliveries(app, after, TICK_BATCH)
    actors.send_batches("apply_shop_delivery", ids, spread=worker_threads(app))
    return len(ids)


def relay_redemptions(app: App) -> int:
    """Queue redemptions still waiting for their shop code (their queued job lost with Redis)."""
    return _queue_ids(
        app,
        "create_reward_code",
        Redemption.id,
        Redemption.state == RedemptionState.PENDING,
        Redemption.updated_at <= _relay_cutoff(app),
        no_retry_waiting("create_reward_code", Redemption.id, _relay_cutoff(app)),
    )


def relay(app: App) -> int:
    return (
        relay_shop_deliveries(app)
        + relay_events(app)
        + relay_messages(app)
        + relay_redemptions(app)
    )


def _run_together(enrollment_ids: list[int]) -> None:
    actors.send("run_enrollments", enrollment_ids)


def fire_schedules(app: App) -> int:
    """Enter the audiences of cron journeys whose fire time has come."""
    from automations.triggers.schedules import fire_due_schedules

    return fire_due_schedules(app, _run_together)


def enter_date_journeys(
    app: App,
    *,
    only: Collection[str] | None = None,
    fired_after: datetime | Mapping[str, datetime | None] | None = None,
    skip_zones: Mapping[str, Collection[str]] | None = None,
) -> int:
    """Enter the members whose date-journey moment (e.g. 09:00 on their birthday) has come.

    One scan per journey, all in one session, then the due members entered a batch
    per statement and their first steps queued a batch per message
    (`triggers.entry_batches`). `only`: these journeys, not every date journey.
    `fired_after`: only the moments after this instant, or after each journey's own
    (the simulator, which ran the tick then, leaves out the members it already saw
    that day). `skip_zones`: per journey, not its members in these zones (the
    simulator's, whose `at` did not come since its previous scan). A scan only reads; what
    one journey enters changes no other journey's scan, so every scan runs before the
    first entry.
    """
    from automations.definition import DateTrigger
    from automations.enrollments import Entrant
    from automations.triggers.date_scan import due_date_entries
    from automations.triggers.entry_batches import enter_in_batches
    from automations.versions import latest_published

    now = app.clock.now()
    scans = []
    with app.database.sessions() as session:
        for published in latest_published(session):
            trigger = published.journey.trigger
            if not isinstance(trigger, DateTrigger) or published.journey.status != "active":
                continue
            if only is not None and published.journey.id not in only:
                continue
            after = (
                fired_after.get(published.journey.id)
                if isinstance(fired_after, Mapping)
                else fired_after
            )
            due = due_date_entries(
                session,
                published.journey.id,
                trigger,
                now,
                app.settings,
                fired_after=after,
                skip_zones=skip_zones.get(published.journey.id, ()) if skip_zones else (),
            )
            if due:
                scans.append((published, due))
    entered = 0
    for published, due in scans:
        entrants = (
            Entrant(d.member_id, d.occurrence, {"fire_at": d.fire_at.isoformat()}) for d in due
        )
        entered += enter_in_batches(app, published, entrants, _run_together, now=now)
    return entered


def queue_crm_push(app: App) -> int:
    """Queue a push of changed members to each configured CRM not backing off a refusal."""
    return _queue_crm(app, "crm_push", SyncDirection.PUSH)


def queue_crm_pull(app: App) -> int:
    """Queue a pull of CRM edits from each configured CRM not backing off a refusal."""
    return _queue_crm(app, "crm_pull", SyncDirection.PULL)


def _queue_crm(app: App, actor: str, direction: SyncDirection) -> int:
    from crm_sync.adapters import configured_crms
    from crm_sync.runs import crm_due

    crms = [crm for crm in configured_crms(app.settings) if crm_due(app, crm, direction)]
    for crm in crms:
        actors.send(actor, crm)
    return len(crms)


def pay_referrals(app: App) -> int:
    """Pay the referrers whose referral's hold is over (`referral.completed`, once each)."""
    from loyalty.referral_review import pay_due

    paid = pay_due(app.database, app.settings, app.clock.now())
    actors.send_batches("process_event", paid, spread=worker_threads(app))
    return len(paid)


TICKS = (
    Tick(
        "outbox_relay", 30, relay, "queue stored events, messages and redemptions not yet processed"
    ),
    Tick("expire_points", 3600, expire_points, "post expiry entries for lots past expires_at"),
    Tick("due_enrollments", 30, wake_enrollments, "wake enrollments whose wait is over"),
    Tick("date_triggers", 60, enter_date_journeys, "enter members into date journeys"),
    Tick("cron_journeys", 60, fire_schedules, "fire scheduled journeys"),
    Tick(
        "crm_push",
        300,
        queue_crm_push,
        "push changed members to the CRMs",
        minutes_setting="crm_push_minutes",
    ),
    Tick(
        "crm_pull", 900, queue_crm_pull, "pull CRM edits back", minutes_setting="crm_pull_minutes"
    ),
    Tick("referral_payouts", 300, pay_referrals, "pay referrals whose hold is over"),
)

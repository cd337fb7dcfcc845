"""`/metrics`: the program's figures in the Prometheus text format.

Two sources, so that the figures are right however many processes run:

* What the database and Redis hold — messages by journey, channel and state,
  suppressions by reason, enrollments and conversions by journey, events by
  type, the due outbox and its oldest message, dead letters, CRM sync status,
  queue depths — is read at scrape time by `ProgramCollector`: messages from
  the counters a trigger keeps with the rows (`loyalty.message_counts`), the
  rest with a few indexed queries. Any web process answers the same, and the
  figures match the rows.
* What one process counts as it works (`loyalty.metrics`: provider and CRM
  requests, scheduler ticks) is added from prometheus-client's multiprocess
  folder when `PROMETHEUS_MULTIPROC_DIR` is set, else from this process alone.

A database or Redis that does not answer never fails the scrape: its
`loyalty_*_up` gauge says 0 and its figures are left out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import redis
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from automations.runtime.queues import queue_depths
from automations.runtime.ticks import TICKS
from loyalty.app import App
from loyalty.message_counts import message_counts
from loyalty.models import WAITING_STATES, DeadLetter, Enrollment, Event, Message, SyncCursor
from loyalty.states import MessageState

__all__ = ["ProgramCollector", "metrics_endpoint", "metrics_registry", "suppression_reason"]

log = logging.getLogger("web")

#: Milliseconds one figure's query may run on PostgreSQL before the scrape leaves it out.
STATEMENT_TIMEOUT_MS = 5000
#: Seconds a whole scrape may take before it answers 503.
SCRAPE_TIMEOUT_SECONDS = 20.0
#: The label value for messages that belong to no journey (test sends, CRM updates).
NO_JOURNEY = "none"


class ProgramCollector(Collector):
    """Figures read from the database and Redis at each scrape."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterable[Metric]:
        yield from self._database()
        yield from self._queues()
        intervals = GaugeMetricFamily(
            "loyalty_scheduler_tick_interval_seconds",
            "How often the scheduler runs each tick (a tick is late after this long).",
            labels=["tick"],
        )
        for tick in TICKS:
            intervals.add_metric([tick.name], tick.interval(self.app.settings))
        yield intervals

    def _database(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "loyalty_database_up", "Whether the database answered this scrape's queries."
        )
        try:
            with self.app.database.sessions() as session:
                if not self.app.database.is_sqlite:
                    session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
                    # Compiling these short index reads costs more than running them.
                    session.execute(text("SET LOCAL jit = off"))
                families = list(_database_figures(session, self.app.clock.now()))
        except SQLAlchemyError as exc:
            # QueryCanceled: a figure took longer than STATEMENT_TIMEOUT_MS.
            error = type(getattr(exc, "orig", None) or exc).__name__
            log.warning("metrics.database_unavailable", extra={"error": error})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _queues(self) -> Iterator[Metric]:
        url = self.app.settings.redis_url
        if not url:
            return
        up = GaugeMetricFamily("loyalty_redis_up", "Whether Redis answered this scrape.")
        try:
            depths = queue_depths(url)
        except redis.RedisError as exc:
            log.warning("metrics.redis_unavailable", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        queued = GaugeMetricFamily(
            "loyalty_queue_messages",
            "Messages held in Redis per Dramatiq queue: ready (waiting or being worked on) "
            "and delayed (retries not yet due).",
            labels=["queue", "kind"],
        )
        for (queue, kind), count in sorted(depths.items()):
            queued.add_metric([queue, kind], count)
        yield queued


def _database_figures(session: Session, now: datetime) -> Iterator[Metric]:
    yield from _messages(session, now)
    yield from _enrollments(session)
    yield from _events(session)
    yield from _dead_letters(session)
    yield from _crm_sync(session)


def _messages(session: Session, now: datetime) -> Iterator[Metric]:
    by_state = GaugeMetricFamily(
        "loyalty_messages",
        "Outbox messages by journey, channel and state (pending, claimed, sent, deferred, "
        "suppressed, failed, unknown).",
        labels=["journey", "channel", "state"],
    )
    suppressed = GaugeMetricFamily(
        "loyalty_messages_suppressed",
        "Suppressed messages by journey, channel and the rule that stopped them "
        "(no_consent, a suppression list reason, frequency_cap, erased).",
        labels=["journey", "channel", "reason"],
    )
    # The counters kept with the rows (migration 0015), not a count of millions of rows.
    states: dict[tuple[str, str, str], int] = {}
    reasons: dict[tuple[str, str, str], int] = {}
    for count in message_counts(session):
        journey = count.journey_id or NO_JOURNEY
        key = (journey, count.channel, count.state)
        states[key] = states.get(key, 0) + count.n
        if count.state == MessageState.SUPPRESSED:
            why = (journey, count.channel, suppression_reason(count.reason))
            reasons[why] = reasons.get(why, 0) + count.n
    for labels, n in sorted(states.items()):
        by_state.add_metric(list(labels), n)
    for labels, n in sorted(reasons.items()):
        suppressed.add_metric(list(labels), n)
    yield by_state
    yield suppressed

    due_at = func.coalesce(Message.next_attempt_at, Message.created_at)
    due = GaugeMetricFamily(
        "loyalty_outbox_due_messages",
        "Messages whose time to go has come but that have not gone yet, by channel.",
        labels=["channel"],
    )
    oldest = GaugeMetricFamily(
        "loyalty_outbox_oldest_due_age_seconds",
        "How long the longest-waiting due message has been due, by channel.",
        labels=["channel"],
    )
    due_rows = session.execute(
        select(Message.channel, func.count(), func.min(due_at))
        .where(
            # Spelled as the partial index `ix_messages_due` is, so that even a prepared
            # statement's generic plan reads it.
            text(WAITING_STATES),
            or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
        )
        .group_by(Message.channel)
    )
    for channel, waiting, since in due_rows:
        due.add_metric([channel], waiting)
        oldest.add_metric([channel], max(0.0, (now - _aware(since)).total_seconds()))
    yield due
    yield oldest


def suppression_reason(error: str) -> str:
    """The label of a suppression: its rule, without the detail some errors add after a colon
    (labels stay a closed set)."""
    return error.split(":", 1)[0].strip() or "unknown"


def _enrollments(session: Session) -> Iterator[Metric]:
    by_state = GaugeMetricFamily(
        "loyalty_enrollments",
        "Enrollments by journey and state (active, waiting, completed, exited, converted).",
        labels=["journey", "state"],
    )
    entered = CounterMetricFamily(
        "loyalty_enrollments_entered", "Members entered into each journey.", labels=["journey"]
    )
    converted = CounterMetricFamily(
        "loyalty_conversions", "Enrollments that reached their journey's goal.", labels=["journey"]
    )
    # Two reads of two indexes (journey, state, …) and (journey, converted_at), each from the
    # index alone, rather than one scan of every enrollment.
    rows = session.execute(
        select(Enrollment.journey_id, Enrollment.state, func.count()).group_by(
            Enrollment.journey_id, Enrollment.state
        )
    )
    conversions = session.execute(
        select(Enrollment.journey_id, func.count())
        .where(Enrollment.converted_at.is_not(None))
        .group_by(Enrollment.journey_id)
    )
    won = {journey_id: int(count) for journey_id, count in conversions}
    totals: dict[str, int] = {}
    for journey_id, state, count in rows:
        by_state.add_metric([journey_id, state], count)
        totals[journey_id] = totals.get(journey_id, 0) + count
    for journey_id, seen in sorted(totals.items()):
        entered.add_metric([journey_id], seen)
        converted.add_metric([journey_id], won.get(journey_id, 0))
    yield by_state
    yield entered
    yield converted


def _events(session: Session) -> Iterator[Metric]:
    received = CounterMetricFamily(
        "loyalty_events_received", "Events stored, by type.", labels=["type"]
    )
    processed = CounterMetricFamily(
        "loyalty_events_processed", "Events processed, by type.", labels=["type"]
    )
    parked = GaugeMetricFamily(
        "loyalty_events_parked",
        "Events whose processing failed for good, waiting for `loyalty dlq replay`, by type.",
        labels=["type"],
    )
    rows = session.execute(
        select(
            Event.type, func.count(), func.count(Event.processed_at), func.count(Event.parked_at)
        ).group_by(Event.type)
    )
    for event_type, count, done, stuck in rows:
        received.add_metric([event_type], count)
        processed.add_metric([event_type], done)
        parked.add_metric([event_type], stuck)
    yield received
    yield processed
    yield parked


def _dead_letters(session: Session) -> Iterator[Metric]:
    waiting = GaugeMetricFamily(
        "loyalty_dead_letters_waiting",
        "Dead letters not replayed yet, by actor.",
        labels=["actor"],
    )
    total = CounterMetricFamily(
        "loyalty_dead_letters", "Dead letters ever recorded, by actor.", labels=["actor"]
    )
    rows = session.execute(
        select(DeadLetter.actor, func.count(), func.count(DeadLetter.replayed_at)).group_by(
            DeadLetter.actor
        )
    )
    for actor, count, replayed in rows:
        waiting.add_metric([actor], count - replayed)
        total.add_metric([actor], count)
    yield waiting
    yield total


def _crm_sync(session: Session) -> Iterator[Metric]:
    labels = ["crm", "direction"]
    last_run = GaugeMetricFamily(
        "loyalty_crm_sync_last_run_timestamp_seconds",
        "When each CRM's last push or pull ended (Unix time).",
        labels=labels,
    )
    failing = GaugeMetricFamily(
        "loyalty_crm_sync_failing",
        "Whether each CRM's last push or pull stopped on an error.",
        labels=labels,
    )
    refusals = GaugeMetricFamily(
        "loyalty_crm_sync_refusals",
        "Runs in a row that the CRM refused (the scheduler backs off).",
        labels=labels,
    )
    for cursor in session.scalars(select(SyncCursor).order_by(SyncCursor.crm)):
        key = [cursor.crm, cursor.direction]
        if cursor.last_run_at is not None:
            last_run.add_metric(key, _aware(cursor.last_run_at).timestamp())
        failing.add_metric(key, 1 if cursor.last_error else 0)
        refusals.add_metric(key, cursor.refusals)
    yield last_run
    yield failing
    yield refusals


def _aware(value: datetime) -> datetime:
    # Aggregates (min) bypass the column type on SQLite and come back naive UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class _ThisProcess(Collector):
    """The figures of this process's default registry (when there is no multiprocess folder)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def metrics_registry(app: App) -> CollectorRegistry:
    """The registry `/metrics` exposes for `app`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProgramCollector(app))
    folder = app.settings.prometheus_multiproc_dir
    if folder is not None:
        MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    return registry


async def metrics_endpoint(request: Request) -> Response:
    """The Prometheus exposition of the program's figures (text, or OpenMetrics on request)."""
    registry: CollectorRegistry = request.app.state.metrics
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    started = time.monotonic()
    try:
        body = await asyncio.wait_for(
            run_in_threadpool(encoder, registry), timeout=SCRAPE_TIMEOUT_SECONDS
        )
    except TimeoutError:
        log.warning("metrics.slow", extra={"seconds": round(time.monotonic() - started, 1)})
        return PlainTextResponse(
            f"metrics: no answer within {SCRAPE_TIMEOUT_SECONDS:.0f} s\n", status_code=503
        )
    return Response(body, media_type=content_type)

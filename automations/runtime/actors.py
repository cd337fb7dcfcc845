"""Actors: thin, take ids and plain JSON, and are safe to run twice.

Each actor loads state by id, calls a service function and commits. Failures
follow the error classes: retriable ones are retried with backoff (honouring
a Retry-After), fatal and skippable ones fail at once and land in the dead
letters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import dramatiq
import structlog
from dramatiq import Actor, Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from sqlalchemy.exc import OperationalError

from automations import deliveries, event_batches, runner, runner_batches, runtime
from automations.routing import route_event
from automations.runner_batches import RanBatch
from automations.runtime.limits import one_at_a_time
from automations.triggers.entry_batches import run_in_batches
from channels import retries
from channels.email_batches import Gathering, deliveries_needed
from loyalty import events, ledger
from loyalty.app import App
from loyalty.errors import FatalError, RetriableError, SkippableError
from loyalty.settings import Settings
from loyalty.states import MessageState, SyncDirection

__all__ = ["BATCH_ACTORS", "declare", "send", "send_batches", "transient"]

log = logging.getLogger(__name__)

_declared: dict[str, Actor[Any, Any]] = {}

#: Retries and wake-ups due within this many seconds are queued by the worker, with
#: their delay; later ones are left to the scheduler's relay and wake-up ticks.
RETRY_HORIZON_SECONDS = 15 * 60
#: The same in-process (the embedded default), where a command waits for queued work
#: before it exits: only short waits are worth holding it for.
EMBEDDED_RETRY_HORIZON_SECONDS = 5


def process_event(event_id: int) -> None:
    """Apply one stored event, route it into the journeys and run the steps it started, in
    one transaction (`event_batches`); the messages they made are delivered next.

    Should that fail, or another worker hold the event or its member, the event goes
    as it would alone: applied and routed in its own transaction (with this actor's
    retries), then its enrollments each in theirs.
    """
    app = runtime.current()
    try:
        done = event_batches.process_events(app, [event_id])
    except Exception as exc:
        log.info("event.processed_alone", extra={"event_id": event_id, "error": repr(exc)})
        done = None
    if done is None or done.alone:
        _then("run_enrollment", _process(event_id))
        return
    _queue_after(app, done)
    _then("deliver_message", done.messages)


def _process(event_id: int) -> list[int]:
    """Apply and route one event, queue the events it caused; the enrollments it made."""
    app = runtime.current()
    caused, enrollments = events.handle_event(
        app.database,
        event_id,
        settings=app.settings,
        now=app.clock.now(),
        also=lambda session, event: route_event(session, event, settings=app.settings),
    )
    for caused_id in caused:
        send("process_event", caused_id)
    return enrollments


def run_enrollment(enrollment_id: int) -> None:
    """Run an enrollment's steps until it waits or ends; queue the messages it made."""
    app = runtime.current()
    ran = runner.run_enrollment(app, enrollment_id)
    for event_id in ran.events:
        send("process_event", event_id)
    _then("deliver_message", ran.messages)
    if ran.wake_at is not None:
        # A short wait wakes on time rather than at the next wake-up tick, which stays
        # the backstop (a run that finds the wait not over does nothing).
        _send_later(
            "run_enrollment", enrollment_id, (ran.wake_at - app.clock.now()).total_seconds()
        )


def _then(name: str, ids: list[int]) -> None:
    """Hand the next hop its work: on Redis, a single piece (what most events and steps
    make) runs here at once, saving a round through the broker; several are queued, so
    that workers run them side by side.

    Work done here is committed before it runs, so one that fails is queued for its own
    actor, with its retries and dead letter, as if it had never been tried here.
    """
    if len(ids) == 1 and isinstance(dramatiq.get_broker(), RedisBroker):
        try:
            _declared[name].fn(ids[0])
        except Exception as exc:
            log.info("hop.queued_after_failure", extra={"actor": name, "error": type(exc).__name__})
        else:
            return
    for work_id in ids:
        send(name, work_id)


def deliver_message(message_id: int) -> None:
    """Claim, check, render and send one message (or journey call, or CRM task); queue its
    retry when the provider said wait, and its batch's next look while an email batch
    gathers."""
    app = runtime.current()
    state = deliveries.deliver(app, message_id)
    if isinstance(state, Gathering):
        _declared["deliver_message"].send_with_options(
            args=(state.message_id,), delay=int(state.seconds * 1000) + 1
        )
        return
    if state != MessageState.PENDING:
        return  # sent, settled, or not due yet: nothing for this run to follow up
    wait = retries.next_retry(app, message_id)
    if wait is not None:
        _send_later("deliver_message", message_id, wait)


def _send_later(actor: str, row_id: int, seconds: float) -> None:
    """Queue `actor(row_id)` to run in `seconds`, when that is within the horizon; later
    ones are left to the scheduler's ticks."""
    embedded = isinstance(dramatiq.get_broker(), StubBroker)
    horizon = EMBEDDED_RETRY_HORIZON_SECONDS if embedded else RETRY_HORIZON_SECONDS
    if seconds <= horizon:
        delay = max(int(seconds * 1000), 0) + 1
        _declared[actor].send_with_options(args=(row_id,), delay=delay)


def expire_points(member_id: int) -> None:
    """Post expiry entries for one member's lots past their expiry."""
    app = runtime.current()
    with app.database.transaction() as session:
        member = ledger.lock_member(session, member_id)
        ledger.expire_due(session, member, now=app.clock.now())
        caused = ledger.take_emitted(session)
    for event_id in caused:
        send("process_event", event_id)


def crm_push(crm: str) -> None:
    """Push the members whose mapped values changed to one CRM (one push per CRM at a time).

    A CRM that refuses the run (bad credentials, a missing field) is noted on its
    sync status and backed off (`crm_sync.runs.record_refusal`), not dead-lettered:
    the next tick would only be refused again.
    """
    from crm_sync.runs import REFUSALS, record_refusal, run_push

    app = runtime.current()
    limiter = one_at_a_time(f"crm_push:{crm}", app.settings.redis_url)
    with limiter.acquire(raise_on_failure=False) as mine:
        if not mine:
            log.info("crm.push_skipped", extra={"crm": crm, "reason": "a push is running"})
            return
        try:
            report = run_push(app, crm)
        except REFUSALS as exc:
            record_refusal(app, crm, SyncDirection.PUSH, exc)
            return
    log.info("crm.pushed", extra={"crm": crm, "landed": report.landed, "calls": report.calls})


def crm_pull(crm: str) -> None:
    """Apply one CRM's edits since its cursor (one pull per CRM at a time); refusals as a push."""
    from crm_sync.pull import run_pull
    from crm_sync.runs import REFUSALS, record_refusal

    app = runtime.current()
    limiter = one_at_a_time(f"crm_pull:{crm}", app.settings.redis_url)
    with limiter.acquire(raise_on_failure=False) as mine:
        if not mine:
            return
        try:
            report = run_pull(app, crm)
        except REFUSALS as exc:
            record_refusal(app, crm, SyncDirection.PULL, exc)
            return
    log.info("crm.pulled", extra={"crm": crm, "updated": report.updated})


def create_reward_code(redemption_id: int) -> None:
    """Create a redemption's code at the shop (or locally); queue the events it caused."""
    from shops.codes import issue_code

    for event_id in issue_code(runtime.current(), redemption_id):
        send("process_event", event_id)


def apply_shop_delivery(row_id: int) -> None:
    """Apply one stored shop webhook delivery; queue the events it made."""
    for event_id in _apply_shop_delivery(row_id):
        send("process_event", event_id)


def _apply_shop_delivery(row_id: int) -> list[int]:
    from automations.shop_deliveries import apply_delivery

    return apply_delivery(runtime.current(), row_id).event_ids


def apply_shop_deliveries(row_ids: list[int]) -> None:
    """Apply stored shop deliveries the web process queued together (one message a batch).

    They are applied in one transaction (`apply_deliveries`), each as `apply_shop_delivery`
    does; should it fail, each is applied on its own, and one that fails again is queued
    on its own, with that actor's retries and dead letter, and never holds the rest.
    Privacy requests, and deliveries another worker holds, go on their own too. The
    events they made are queued together (`process_events`).
    """
    from automations.shop_deliveries import apply_deliveries

    try:
        applied, alone = apply_deliveries(runtime.current(), row_ids)
    except Exception as exc:  # the batch's own transaction failed: each goes alone instead
        log.warning("batch.run_alone", extra={"actor": "apply_shop_deliveries", "error": repr(exc)})
        applied, alone = [], row_ids
    made = [event_id for done in applied for event_id in done.event_ids]
    _each_alone(
        alone, lambda row_id: made.extend(_apply_shop_delivery(row_id)), "apply_shop_delivery"
    )
    send_batches("process_event", made)


def run_enrollments(enrollment_ids: list[int]) -> None:
    """Run enrollments a tick entered or woke together (one message a batch) in one
    transaction (`runner_batches`); one that fails, or that another worker holds, is queued
    again on its own and never holds the rest. The deliveries they made go in batches."""
    app = runtime.current()
    try:
        ran = runner_batches.run_enrollments(app, enrollment_ids)
    except Exception as exc:  # the batch's own transaction failed: each runs alone instead
        log.warning("batch.run_alone", extra={"actor": "run_enrollments", "error": repr(exc)})
        _each_alone(enrollment_ids, run_enrollment, "run_enrollment")
        return
    for event_id in ran.events:
        send("process_event", event_id)
    send_batches(retries.ACTOR, ran.messages)
    now = app.clock.now()
    for enrollment_id, wake_at in ran.wakes.items():
        _send_later("run_enrollment", enrollment_id, (wake_at - now).total_seconds())
    for enrollment_id in ran.alone:
        send("run_enrollment", enrollment_id)


def process_events(event_ids: list[int]) -> None:
    """Process events queued together (by the relay, or several that arrived together) and
    run the steps they started, in one transaction (`event_batches`); the messages they
    made are delivered in batches. Should the batch fail, each event is processed in its
    own transaction, and one that fails again is queued on its own (its retries, dead
    letter and parking are that actor's) and never holds the rest; the enrollments they
    made then run as one batch (`run_enrollments`)."""
    app = runtime.current()
    try:
        done = event_batches.process_events(app, event_ids)
    except Exception as exc:  # the batch's own transaction failed: each goes alone instead
        log.warning("batch.run_alone", extra={"actor": "process_events", "error": repr(exc)})
        entered: list[int] = []
        _each_alone(event_ids, lambda event_id: entered.extend(_process(event_id)), "process_event")
        if entered:  # the journeys they started run together, as a batch of their own would
            run_enrollments(entered)
        return
    _queue_after(app, done)
    send_batches(retries.ACTOR, done.messages)
    for event_id in done.alone:
        send("process_event", event_id)


def _queue_after(app: App, done: RanBatch) -> None:
    """Queue what a processed batch caused: its events, and the wake-ups due soon."""
    if done.events:
        send_batches("process_event", done.events)
    now = app.clock.now()
    for enrollment_id, wake_at in done.wakes.items():
        _send_later("run_enrollment", enrollment_id, (wake_at - now).total_seconds())


def deliver_messages(message_ids: list[int]) -> None:
    """Deliver messages the relay queued together, each as `deliver_message` does; one that
    fails is queued again on its own and never holds the rest. Emails of one batch need only
    one delivery (`deliveries_needed`)."""
    needed = deliveries_needed(runtime.current(), message_ids)
    _each_alone(needed, deliver_message, retries.ACTOR)


def expire_members_points(member_ids: list[int]) -> None:
    """Post the expiries of members the expiry tick queued together, each as `expire_points`
    does; one that fails is queued again on its own and never holds the rest."""
    _each_alone(member_ids, expire_points, "expire_points")


def create_reward_codes(redemption_ids: list[int]) -> None:
    """Create the codes of redemptions the relay queued together, each as `create_reward_code`
    does; one that fails is queued again on its own and never holds the rest."""
    _each_alone(redemption_ids, create_reward_code, "create_reward_code")


def _each_alone(ids: list[int], fn: Callable[[int], None], actor: str) -> None:
    """`fn` each id of a batch; a failed one goes to `actor` alone, with its retries.

    Each id's log lines carry it under the one-row actor's field. The batch's try is not
    one of that actor's retries: the row gets its own, counted and noted (`retry_waits`)
    as if the batch had never tried it.
    """
    field = _ID_FIELDS.get(actor)
    for row_id in ids:
        try:
            with structlog.contextvars.bound_contextvars(**({field: row_id} if field else {})):
                fn(row_id)
        except Exception as exc:
            log.warning(
                "batch.item_retried_alone",
                extra={"actor": actor, "row_id": row_id, "error": type(exc).__name__},
            )
            send(actor, row_id)


#: The actor that does a batch of each one-row actor's rows (one message a batch).
BATCH_ACTORS = {
    "process_event": "process_events",
    "apply_shop_delivery": "apply_shop_deliveries",
    "run_enrollment": "run_enrollments",
    retries.ACTOR: "deliver_messages",
    "create_reward_code": "create_reward_codes",
    "expire_points": "expire_members_points",
}


def send_batches(name: str, ids: Sequence[int], *, spread: int = 1) -> None:
    """Queue `ids` for the one-row actor `name` a batch per message, through its batch actor
    (`run_in_batches`: up to RUN_BATCH per message, spread over `spread` messages)."""
    run_in_batches(ids, partial(send, BATCH_ACTORS[name]), spread=spread)


_ACTORS: dict[str, tuple[Callable[..., None], str]] = {
    "process_event": (process_event, "events"),
    "process_events": (process_events, "events"),
    "apply_shop_delivery": (apply_shop_delivery, "events"),
    "apply_shop_deliveries": (apply_shop_deliveries, "events"),
    "expire_points": (expire_points, "points"),
    "expire_members_points": (expire_members_points, "points"),
    "run_enrollment": (run_enrollment, "journeys"),
    "run_enrollments": (run_enrollments, "journeys"),
    retries.ACTOR: (deliver_message, retries.QUEUE),
    "deliver_messages": (deliver_messages, retries.QUEUE),
    "crm_push": (crm_push, "crm"),
    "crm_pull": (crm_pull, "crm"),
    "create_reward_code": (create_reward_code, "rewards"),
    "create_reward_codes": (create_reward_codes, "rewards"),
}


def queue_names() -> list[str]:
    """The Dramatiq queues the actors use, sorted."""
    return sorted({queue for _, queue in _ACTORS.values()})


def transient(exception: BaseException | None) -> bool:
    """A failure that a later try may not meet again (a lost connection, a busy provider)."""
    return isinstance(exception, (RetriableError, OperationalError, dramatiq.Retry))


def _retry_when(max_retries: int) -> Callable[[int, BaseException], bool]:
    def retry_when(retries: int, exception: BaseException) -> bool:
        return transient(exception) and retries < max_retries

    return retry_when


#: The field each actor's id is logged under: every line it logs carries it.
_ID_FIELDS = {
    "process_event": "event_id",
    "run_enrollment": "enrollment_id",
    retries.ACTOR: "message_id",
    "expire_points": "member_id",
    "create_reward_code": "redemption_id",
    "apply_shop_delivery": "delivery_id",
}


def _honour_retry_after(fn: Callable[..., None], name: str) -> Callable[..., None]:
    field = _ID_FIELDS.get(name)

    def run(*args: Any, **kwargs: Any) -> None:
        bound = {field: args[0]} if field and args else {}
        try:
            with structlog.contextvars.bound_contextvars(**bound):
                fn(*args, **kwargs)
        except RetriableError as exc:
            if exc.retry_after is None:
                raise
            raise dramatiq.Retry(str(exc), delay=int(exc.retry_after * 1000)) from exc

    run.__name__ = fn.__name__
    run.__doc__ = fn.__doc__
    return run


def declare(broker: Broker, settings: Settings) -> None:
    """Bind every actor to `broker` (called once the broker is built)."""
    _declared.clear()
    for name, (fn, queue) in _ACTORS.items():
        _declared[name] = dramatiq.Actor(
            _honour_retry_after(fn, name),
            broker=broker,
            actor_name=name,
            queue_name=queue,
            priority=0,
            options={
                "throws": (FatalError, SkippableError),
                "retry_when": _retry_when(settings.max_retries),
                "min_backoff": settings.retry_min_backoff_ms,
                "max_backoff": settings.retry_max_backoff_ms,
            },
        )


def send(name: str, *args: Any, **kwargs: Any) -> None:
    """Queue a message for the actor `name`."""
    if name not in _declared:
        raise RuntimeError(f"actor {name!r} is not declared; build the broker first")
    _declared[name].send(*args, **kwargs)

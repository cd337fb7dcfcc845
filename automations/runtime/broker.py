"""The Dramatiq broker built from settings, the actors bound to it, and an embedded worker.

With `REDIS_URL` set, work goes through Redis to `loyalty worker` processes.
Without it, an in-process broker and worker threads run everything inside the
calling process (the embedded default).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import dramatiq
import redis
from dramatiq import Broker, Consumer, Message, Worker
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import Retries
from redis.client import PubSub

from automations.runtime import actors
from automations.runtime.dead_letters import DeadLetters
from automations.runtime.retry_waits import RetryWaits
from channels import retries
from loyalty.settings import Settings

__all__ = [
    "InlineBroker",
    "build_broker",
    "build_inline_broker",
    "embedded_worker",
    "is_embedded",
    "serve_worker_metrics",
]

#: Milliseconds an idle worker thread waits for a message before checking for shutdown
#: (WORKER_TIMEOUT_MS's default): leaving an embedded worker takes about twice this.
WORKER_TIMEOUT_MS = 20


#: How often an idle consumer looks at its queue in Redis when no wake-up comes. Each
#: consumer of each process polled Redis every WORKER_TIMEOUT_MS when idle: an idle
#: `loyalty worker` of two processes spent a third of a core doing it. A message queued
#: through this broker wakes the consumers of its queue at once; this bounds how late a
#: message queued otherwise (by a process that does not publish wake-ups) starts.
IDLE_TIMEOUT_MS = 200
#: The delay queues of an event's way to its email (an event's wait for an earlier one, a
#: gathering batch's next look): their consumers return to their worker every
#: WORKER_TIMEOUT_MS, which starts the delayed messages they hold once their time came.
PROMPT_DELAY_QUEUES = frozenset(dq_name(q) for q in ("events", "journeys", retries.QUEUE))
#: How long any other idle consumer waits for a wake-up before it returns to its worker
#: (which then handles acknowledgements and delayed messages, and stops if told to).
WAIT_SLICE_MS = 200


class WorkBroker(RedisBroker):
    """Dramatiq's Redis broker whose idle consumers wait for a wake-up instead of polling.

    Each message queued publishes a wake-up on its queue's channel (Redis pub/sub) and
    an idle consumer waits on that channel: a message starts as soon as it is queued,
    while idle consumers fetch from Redis only every `IDLE_TIMEOUT_MS`. The consumers of
    the event → email path's delay queues still return to their worker every
    WORKER_TIMEOUT_MS, so that its delayed messages start on time; the others every
    `WAIT_SLICE_MS`.
    """

    def __init__(self, *, worker_timeout_ms: int = WORKER_TIMEOUT_MS, **parameters: Any) -> None:
        super().__init__(**parameters)  # type: ignore[no-untyped-call]
        self.worker_timeout_ms = worker_timeout_ms

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        # The waits are the broker's own (the worker's `timeout` is Dramatiq's setting, read
        # from its environment when it was first imported, which is not always ours).
        prompt = queue_name in PROMPT_DELAY_QUEUES
        return super().consume(
            queue_name, prefetch, self.worker_timeout_ms if prompt else WAIT_SLICE_MS
        )

    @property
    def consumer_class(self) -> type[Consumer]:
        return _WakingConsumer

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        queued = super().enqueue(message, delay=delay)
        self.client.publish(self.wake_channel(queued.queue_name), b"")
        return queued

    def wake_channel(self, queue_name: str) -> str:
        return f"{self.namespace}:wake:{queue_name}"


class _WakingConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, fetching when woken (or every `IDLE_TIMEOUT_MS`) only."""

    def __init__(self, broker: WorkBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self._channel = broker.wake_channel(queue_name)
        self._wakes: PubSub | None = None
        #: Fetch at the next look: a wake-up came, or the last fetch found messages.
        self._look = True
        self._next_poll = 0.0

    def __next__(self) -> MessageProxy | None:
        # As Dramatiq's consumer: a message from the cache, else a fetch of up to the
        # prefetch; when there is none, a wait (for a wake-up, here) and None.
        try:
            while self.message_cache:
                data = self.message_cache.pop(0)
                if data is not None:
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
            room = self.prefetch - self.outstanding_message_count
            if room > 0 and (self._look or time.monotonic() >= self._next_poll):
                self.message_cache = self.broker.do_fetch(self.queue_name, room)
                self._look = bool(self.message_cache)
                self._next_poll = time.monotonic() + IDLE_TIMEOUT_MS / 1000
                if self.message_cache:
                    return self.__next__()
            self._look = self._woken(self.timeout / 1000) or self._look
            return None
        except redis.ConnectionError as exc:
            self._close_wakes()
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def _woken(self, seconds: float) -> bool:
        """Whether a wake-up of this queue came within `seconds`."""
        if self._wakes is None:
            # Subscribed, then fetched: a message queued after this fetch wakes the wait.
            self._wakes = self.broker.client.pubsub(ignore_subscribe_messages=True)
            self._wakes.subscribe(self._channel)
            return True
        woken = self._wakes.get_message(timeout=seconds) is not None
        while woken and self._wakes.get_message(timeout=0) is not None:
            pass  # several wake-ups, one fetch
        return woken

    def close(self) -> None:
        self._close_wakes()
        super().close()

    def _close_wakes(self) -> None:
        if self._wakes is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                self._wakes.close()
            self._wakes = None


def build_broker(settings: Settings) -> Broker:
    """A Redis broker when REDIS_URL is set, otherwise an in-process one; actors declared."""
    broker: Broker
    if settings.redis_url:
        broker = WorkBroker(url=settings.redis_url, worker_timeout_ms=settings.worker_timeout_ms)
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(DeadLetters())
    broker.add_middleware(RetryWaits())
    dramatiq.set_broker(broker)
    actors.declare(broker, settings)
    return broker


def serve_worker_metrics(broker: Broker, settings: Settings) -> None:
    """In `loyalty worker --metrics-port`: Dramatiq's per-actor counts, served with ours.

    Dramatiq's Prometheus middleware forks a process that serves the multiprocess
    folder (`loyalty worker` pointed it at PROMETHEUS_MULTIPROC_DIR); only worker
    processes add it, since its hooks expect the worker's boot.
    """
    if settings.worker_metrics_port and not is_embedded(broker):
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())


def is_embedded(broker: Broker) -> bool:
    return isinstance(broker, StubBroker)


@contextlib.contextmanager
def embedded_worker(
    broker: Broker, threads: int, *, timeout_ms: int = WORKER_TIMEOUT_MS
) -> Iterator[Worker]:
    """Worker threads in this process; leaving the block waits for queued work to finish."""
    worker = Worker(broker, worker_threads=threads, worker_timeout=timeout_ms)
    worker.start()
    try:
        yield worker
        drain(broker)
    finally:
        worker.stop()


def drain(broker: Broker) -> None:
    """Wait until every queue of the in-process broker is empty and its work is done."""
    if not isinstance(broker, StubBroker):
        return
    for _ in range(3):  # work can enqueue more work on another queue
        for queue in list(broker.get_declared_queues()):
            if not queue.endswith(".DQ"):
                broker.join(queue, fail_fast=False)


class InlineBroker(Broker):
    """Work run in the calling thread, in the order it was queued, when `run_queued` is called.

    The simulator's broker: one thread, so a run is repeatable, and no hand-over
    between threads. A message sent with a delay (a send retry) is not kept: the
    relay tick queues it again once its time has come, as it does any retry past
    the worker's horizon. A message that fails goes to the dead letters at once
    (no retry), as one whose retries ran out.
    """

    def __init__(self) -> None:
        # Retries only declares the options the actors carry; it never runs here.
        super().__init__(middleware=[Retries()])
        self._queued: deque[Message[Any]] = deque()
        #: "actor(args): error" of each message that failed.
        self.failures: list[str] = []

    def declare_queue(self, queue_name: str) -> None:
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues[queue_name] = None
            self.emit_after("declare_queue", queue_name)

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        if not delay:
            self.emit_before("enqueue", message, delay)
            self._queued.append(message)
            self.emit_after("enqueue", message, delay)
        return message

    def run_queued(self) -> int:
        """Run every queued message, and what they queue, until none is left; how many ran."""
        ran = 0
        while self._queued:
            message = self._queued.popleft()
            ran += 1
            try:
                self.get_actor(message.actor_name).fn(*message.args, **message.kwargs)
            except Exception as exc:
                self.failures.append(f"{message.actor_name}{message.args}: {exc}")
                proxy = MessageProxy(message)
                proxy.stuff_exception(exc)
                proxy.fail()
                self.emit_after("nack", proxy)
        return ran

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 30000) -> Any:
        raise NotImplementedError("an InlineBroker runs its work in run_queued, not in workers")

    def flush(self, queue_name: str) -> None:
        self._queued = deque(m for m in self._queued if m.queue_name != queue_name)

    def flush_all(self) -> None:
        self._queued.clear()

    def join(self, queue_name: str, *, timeout: int | None = None) -> None:
        self.run_queued()


def build_inline_broker(settings: Settings) -> InlineBroker:
    """An `InlineBroker` with the dead letters and the actors declared."""
    broker = InlineBroker()
    broker.add_middleware(DeadLetters())
    dramatiq.set_broker(broker)
    actors.declare(broker, settings)
    return broker

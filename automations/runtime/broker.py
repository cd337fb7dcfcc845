"""The Dramatiq broker built from settings, the actors bound to it, and an embedded worker.

With `REDIS_URL` set, work goes through Redis to `loyalty worker` processes.
Without it, an in-process broker and worker threads run everything inside the
calling process (the embedded default).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dramatiq
from dramatiq import Broker, Worker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from automations.runtime import actors
from automations.runtime.dead_letters import DeadLetters
from loyalty.settings import Settings

__all__ = ["build_broker", "embedded_worker", "is_embedded", "serve_worker_metrics"]

#: Milliseconds an idle worker thread waits for a message before checking for shutdown.
WORKER_TIMEOUT_MS = 100


def build_broker(settings: Settings) -> Broker:
    """A Redis broker when REDIS_URL is set, otherwise an in-process one; actors declared."""
    broker: Broker
    if settings.redis_url:
        broker = RedisBroker(url=settings.redis_url)  # type: ignore[no-untyped-call]
    else:
        broker = StubBroker()
        broker.emit_after("process_boot")
    broker.add_middleware(DeadLetters())
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
def embedded_worker(broker: Broker, threads: int) -> Iterator[Worker]:
    """Worker threads in this process; leaving the block waits for queued work to finish."""
    worker = Worker(broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS)
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

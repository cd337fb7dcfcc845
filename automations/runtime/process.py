"""A process's part in the runtime: the App for actors, the broker, and embedded workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dramatiq import Broker

from automations import runtime
from automations.runtime.broker import build_broker, embedded_worker, is_embedded
from automations.versions import PublishReport, publish
from loyalty.app import App

__all__ = ["processing", "start"]


def start(app: App, *, on_publish: Callable[[PublishReport], None] | None = None) -> Broker:
    """Make `app` the runtime's, build the broker, and publish the journeys on disk."""
    runtime.configure(app)
    broker = build_broker(app.settings)
    report = publish(app)
    if on_publish is not None:
        on_publish(report)
    return broker


@contextmanager
def processing(
    app: App, *, on_publish: Callable[[PublishReport], None] | None = None
) -> Iterator[bool]:
    """Build the broker for a command that queues work.

    On the embedded default the journeys are published and worker threads run in
    this process until the queued work is done; with Redis, `loyalty worker`
    processes do it. Yields True when the work happens elsewhere.
    """
    runtime.configure(app)
    broker = build_broker(app.settings)
    if not is_embedded(broker):
        yield True
        return
    report = publish(app)
    if on_publish is not None:
        on_publish(report)
    with embedded_worker(broker, app.settings.worker_threads):
        yield False

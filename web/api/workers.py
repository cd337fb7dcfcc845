"""Handing stored events to the workers from the web process, only where that is safe.

With REDIS_URL set, events are queued on Redis after their commit, as `loyalty
events emit` does, and a `loyalty worker` anywhere takes them. On the embedded
default the web process builds no broker: an in-memory queue here would be read
by no worker. The events are stored all the same, and the scheduler's outbox
relay queues them to `loyalty run`'s threads (see `web.surveys`). Should Redis
be unreachable, the relay queues them later too: nothing is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from automations.intake import BROKER_OUTAGES, queue_events, queue_together
from automations.runtime.broker import build_broker
from loyalty.settings import Settings

__all__ = ["EventQueue", "ensure_broker"]

_lock = threading.Lock()
_built: set[str] = set()


def ensure_broker(settings: Settings) -> bool:
    """Build the Redis broker of this process once; False on the embedded default or outage.

    Routes that queue work after their commit share it (one broker per process).
    """
    if not settings.redis_url:
        return False
    with _lock:
        if settings.redis_url not in _built:
            try:
                build_broker(settings)
            except BROKER_OUTAGES:
                return False
            _built.add(settings.redis_url)
    return True


class EventQueue:
    """Queues stored events on Redis; the broker is built on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def send(self, ids: Sequence[int], actor: str = "process_event") -> list[int]:
        """Queue `ids` to `actor`; returns those left for the scheduler's relay."""
        if not ids or not ensure_broker(self._settings):
            return list(ids)
        threads = self._settings.worker_processes * self._settings.worker_threads
        return queue_events(ids, actor, spread=threads)

    def send_together(self, ids: Sequence[int], actor: str) -> list[int]:
        """Queue `ids` in one message to `actor` (which takes the list); those left over."""
        if not ids or not ensure_broker(self._settings):
            return list(ids)
        return queue_together(ids, actor)

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

from automations.intake import BROKER_OUTAGES, queue_events
from automations.runtime.broker import build_broker
from loyalty.settings import Settings

__all__ = ["EventQueue"]


class EventQueue:
    """Queues stored events on Redis; builds the broker on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._ready = False

    def send(self, ids: Sequence[int], actor: str = "process_event") -> list[int]:
        """Queue `ids` to `actor`; returns those left for the scheduler's relay."""
        if not ids or not self._settings.redis_url:
            return list(ids)
        with self._lock:
            if not self._ready:
                try:
                    build_broker(self._settings)
                except BROKER_OUTAGES:
                    return list(ids)
                self._ready = True
        return queue_events(ids, actor)

"""Request pacing: at most N calls in any rolling window.

Providers count requests over a rolling window (HubSpot: 10 seconds) per account,
not per process. This module holds the contract (`Pacer`, `PacerFactory`) and the
in-process window; the runtime swaps in a window kept in Redis, shared by every
worker, when `REDIS_URL` is set (`automations.runtime.pacing`). A 429 pauses
everyone sharing the window for the time the provider asked for.

A call counts from when it is taken until it *completes*, and is then stamped with
its completion time. The CRM counts arrivals, and a call arrives somewhere between
the two; stamping the start instead lets a call that was slow to leave (a busy GIL,
a slow connect) land inside the next window and earn a 429.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "IN_FLIGHT_POLL_S",
    "IN_FLIGHT_TTL_S",
    "WINDOW_MARGIN_S",
    "Pacer",
    "PacerFactory",
    "RollingWindow",
    "forget_local_windows",
    "local_pacer",
]

#: Added to the window against timer granularity.
WINDOW_MARGIN_S = 0.05
#: How long a call may stay "in flight" before its slot is given back regardless (a worker
#: that died mid-call never releases it).
IN_FLIGHT_TTL_S = 30.0
#: Polling interval while the window is full of calls still in flight.
IN_FLIGHT_POLL_S = 0.02


class Pacer(Protocol):
    def acquire(self) -> str:
        """Block until one more call fits in the window; returns a token for `release`."""
        ...

    def release(self, token: str) -> None:
        """The call ended: it now counts from this moment until the window passes."""
        ...

    def pause(self, seconds: float) -> None:
        """Hold every caller for `seconds` (after a 429)."""
        ...


class PacerFactory(Protocol):
    def __call__(self, name: str, limit: int, window_s: float) -> Pacer:
        """The pacer for the account `name`: at most `limit` calls in `window_s` seconds."""
        ...


class RollingWindow:
    """In-process rolling window; thread-safe."""

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limit = limit
        self.window_s = window_s + WINDOW_MARGIN_S
        self._clock = clock
        self._sleep = sleep
        #: token → completion time, or None while in flight (with the time it started).
        self._calls: dict[str, tuple[float, bool]] = {}
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def _try(self, token: str) -> float:
        """0 when the call was counted, else the seconds to wait."""
        with self._lock:
            now = self._clock()
            if now < self._paused_until:
                return self._paused_until - now
            for key, (at, done) in list(self._calls.items()):
                if (done and at <= now - self.window_s) or (
                    not done and at <= now - IN_FLIGHT_TTL_S
                ):
                    del self._calls[key]
            if len(self._calls) < self.limit:
                self._calls[token] = (now, False)
                return 0.0
            finished = [at for at, done in self._calls.values() if done]
            if not finished:
                return IN_FLIGHT_POLL_S
            return max(min(finished) + self.window_s - now, IN_FLIGHT_POLL_S)

    def acquire(self) -> str:
        token = uuid.uuid4().hex
        while (wait := self._try(token)) > 0:
            self._sleep(wait)
        return token

    def release(self, token: str) -> None:
        with self._lock:
            if token in self._calls:
                self._calls[token] = (self._clock(), True)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


_LOCAL: dict[tuple[str, int, float], RollingWindow] = {}
_LOCAL_LOCK = threading.Lock()


def local_pacer(name: str, limit: int, window_s: float) -> Pacer:
    """One window per name in this process, shared by every client built here."""
    with _LOCAL_LOCK:
        return _LOCAL.setdefault((name, limit, window_s), RollingWindow(limit, window_s))


def forget_local_windows() -> None:
    """Drop the in-process windows (a test's fresh emulator has fresh limits too)."""
    with _LOCAL_LOCK:
        _LOCAL.clear()

"""Request pacing: at most N calls in any rolling window, across every worker.

Both CRMs count requests over a rolling window (HubSpot: 10 seconds) per account,
not per process. With `REDIS_URL` set, the window lives in Redis (a sorted set of
call times, kept by Lua scripts on Redis's own clock), so all workers together stay
under the limit; otherwise it lives in this process. A 429 pauses everyone sharing
the window for the time the CRM asked for.

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

__all__ = ["Pacer", "RedisWindow", "RollingWindow", "forget_local_windows", "make_pacer"]

#: Added to the window against timer granularity.
WINDOW_MARGIN_S = 0.05
#: How long a call may stay "in flight" before its slot is given back regardless (a worker
#: that died mid-call never releases it).
IN_FLIGHT_TTL_S = 180.0
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


# KEYS: calls (zset token → completion ms; in-flight calls carry now + TTL), pause key.
# ARGV: limit, window ms, token, in-flight TTL ms, poll ms.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl, poll = tonumber(ARGV[4]), tonumber(ARGV[5])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return paused - now end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + ttl)
  return 0
end
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
if oldest > now then return poll end
return math.max(oldest + window - now, 1)
"""

_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
return now
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then redis.call('SET', KEYS[1], until_ms, 'PX', ARGV[1]) end
return until_ms
"""


class RedisWindow:
    """The same rolling window kept in Redis, shared by every process using `name`."""

    def __init__(
        self,
        redis_url: str,
        name: str,
        limit: int,
        window_s: float,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import redis

        self._redis = redis.Redis.from_url(redis_url)
        self._keys = [f"loyalty:crm-pace:{name}", f"loyalty:crm-pause:{name}"]
        self.limit = limit
        self._window_ms = int((window_s + WINDOW_MARGIN_S) * 1000)
        self._sleep = sleep
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)
        self._pause = self._redis.register_script(_PAUSE)

    def acquire(self) -> str:
        token = uuid.uuid4().hex
        args = [
            self.limit,
            self._window_ms,
            token,
            int(IN_FLIGHT_TTL_S * 1000),
            int(IN_FLIGHT_POLL_S * 1000),
        ]
        while True:
            wait_ms = int(self._acquire(keys=self._keys, args=args))
            if wait_ms <= 0:
                return token
            self._sleep(wait_ms / 1000)

    def release(self, token: str) -> None:
        self._release(keys=self._keys[:1], args=[token])

    def pause(self, seconds: float) -> None:
        self._pause(keys=self._keys[1:], args=[max(int(seconds * 1000), 1)])


_LOCAL: dict[tuple[str, int, float], RollingWindow] = {}
_LOCAL_LOCK = threading.Lock()


def make_pacer(redis_url: str | None, name: str, limit: int, window_s: float) -> Pacer:
    """A Redis window when Redis is configured (shared by all workers), else one window
    per name in this process, shared by every adapter built here (setup, push, erase)."""
    if redis_url:
        return RedisWindow(redis_url, name, limit, window_s)
    with _LOCAL_LOCK:
        return _LOCAL.setdefault((name, limit, window_s), RollingWindow(limit, window_s))


def forget_local_windows() -> None:
    """Drop the in-process windows (a test's fresh emulator has fresh limits too)."""
    with _LOCAL_LOCK:
        _LOCAL.clear()

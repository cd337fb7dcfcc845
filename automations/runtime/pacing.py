"""The rolling window kept in Redis, so every worker sharing an account stays under its limit.

A sorted set of call times, kept by Lua scripts on Redis's own clock; see
`loyalty.pacing` for the contract and the in-process window.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from loyalty.errors import RetriableError
from loyalty.pacing import (
    IN_FLIGHT_POLL_S,
    IN_FLIGHT_TTL_S,
    WINDOW_MARGIN_S,
    Pacer,
    PacerFactory,
    local_pacer,
)
from loyalty.settings import Settings

__all__ = ["RedisWindow", "pacers_for", "redis_pacers"]

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
        args: list[int | str] = [
            self.limit,
            self._window_ms,
            token,
            int(IN_FLIGHT_TTL_S * 1000),
            int(IN_FLIGHT_POLL_S * 1000),
        ]
        while True:
            with _retriable("acquire"):
                wait_ms = int(self._acquire(keys=self._keys, args=args))
            if wait_ms <= 0:
                return token
            self._sleep(wait_ms / 1000)

    def release(self, token: str) -> None:
        with _retriable("release"):
            self._release(keys=self._keys[:1], args=[token])

    def pause(self, seconds: float) -> None:
        with _retriable("pause"):
            self._pause(keys=self._keys[1:], args=[max(int(seconds * 1000), 1)])


@contextmanager
def _retriable(what: str) -> Iterator[None]:
    """A Redis that cannot be reached makes the caller try again later, never a dead end."""
    try:
        yield
    except redis.RedisError as exc:
        raise RetriableError(f"pacing window unreachable ({what}): {type(exc).__name__}") from exc


def redis_pacers(redis_url: str) -> PacerFactory:
    """Pacers whose windows live in Redis, shared by every process using the same name."""

    def pacer(name: str, limit: int, window_s: float) -> Pacer:
        return RedisWindow(redis_url, name, limit, window_s)

    return pacer


def pacers_for(settings: Settings) -> PacerFactory:
    """Windows shared through Redis when REDIS_URL is set, else windows in this process."""
    return redis_pacers(settings.redis_url) if settings.redis_url else local_pacer

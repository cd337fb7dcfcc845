"""At most one run of a job at a time (a CRM push, say), across workers when Redis is set.

Dramatiq's `ConcurrentRateLimiter` with one slot: on Redis when `REDIS_URL` is
set (the slot frees itself after its TTL if its holder dies), else in this
process. A second caller does not wait: the running one already covers its work.
"""

from __future__ import annotations

import functools

import redis
from dramatiq.rate_limits import ConcurrentRateLimiter, RateLimiterBackend
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

__all__ = ["one_at_a_time"]

#: Seconds after which a run's slot is given back even if its holder never ended it.
RUN_TTL_SECONDS = 900

_IN_PROCESS: RateLimiterBackend = StubBackend()  # type: ignore[no-untyped-call]


@functools.cache
def _backend(redis_url: str | None) -> RateLimiterBackend:
    if not redis_url:
        return _IN_PROCESS
    backend: RateLimiterBackend = RedisBackend(client=redis.Redis.from_url(redis_url))
    return backend


def one_at_a_time(
    name: str, redis_url: str | None, ttl_seconds: int = RUN_TTL_SECONDS
) -> ConcurrentRateLimiter:
    """A one-slot limiter for the job `name`: `with limiter.acquire(raise_on_failure=False)`."""
    key = f"loyalty:single:{name}"
    return ConcurrentRateLimiter(  # type: ignore[no-untyped-call]
        _backend(redis_url), key, limit=1, ttl=ttl_seconds * 1000
    )

"""At most one run of a job at a time (a CRM push, say), across workers when Redis is set.

A second caller does not wait: the running one already covers its work. A
Redis key with a TTL frees itself if its holder dies.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

__all__ = ["single_run"]

_local: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end"
)


@contextmanager
def single_run(name: str, redis_url: str | None, ttl_seconds: int = 900) -> Iterator[bool]:
    """Yields True when this caller runs the job, False when another run holds it."""
    if redis_url:
        client = redis.Redis.from_url(redis_url)
        key, token = f"loyalty:single:{name}", uuid.uuid4().hex
        held = bool(client.set(key, token, nx=True, ex=ttl_seconds))
        try:
            yield held
        finally:
            if held:
                client.eval(_RELEASE, 1, key, token)  # type: ignore[no-untyped-call]
        return
    with _local_guard:
        lock = _local.setdefault(name, threading.Lock())
    held = lock.acquire(blocking=False)
    try:
        yield held
    finally:
        if held:
            lock.release()

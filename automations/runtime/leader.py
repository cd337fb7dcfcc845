"""The scheduler's leader lock: one active scheduler, the others wait to take over.

Redis (a key with a TTL, renewed while alive) when REDIS_URL is set; otherwise
a PostgreSQL session-level advisory lock, or an exclusive file lock beside a
SQLite database. A lock held by a dead process is released by expiry, by the
closed connection, or by the operating system, so a waiting scheduler takes over.
The database's unique keys remain the real guard against double work.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import uuid
from pathlib import Path
from typing import IO, Protocol

import redis
from redis.exceptions import LockError
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from loyalty.db import Database
from loyalty.settings import Settings

__all__ = ["LeaderLock", "build_leader_lock"]

#: Name of the lock: one per deployment sharing a database or a Redis.
LOCK_NAME = "loyalty:scheduler:leader"
#: PostgreSQL advisory lock key (any fixed 64-bit number).
ADVISORY_KEY = 0x10_7A17_5C4E


class LeaderLock(Protocol):
    holder: str

    def acquire(self) -> bool:
        """Try once to become leader; True when this process holds the lock."""
        ...

    def refresh(self) -> bool:
        """Keep the lock; False when it was lost."""
        ...

    def release(self) -> None: ...


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RedisLeaderLock:
    """redis-py's `Lock` (token compare-and-set in Lua), renewed with `extend`."""

    def __init__(self, url: str, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self.holder = _holder()
        # Not thread-local: the scheduler may renew and release from another thread.
        self._lock = redis.Redis.from_url(url).lock(
            LOCK_NAME, timeout=ttl_seconds, blocking=False, thread_local=False
        )

    def acquire(self) -> bool:
        return bool(self._lock.acquire(blocking=False, token=self.holder))

    def refresh(self) -> bool:
        try:
            return bool(self._lock.extend(self._ttl, replace_ttl=True))
        except LockError:  # expired and maybe taken by another scheduler
            return False

    def release(self) -> None:
        with contextlib.suppress(LockError):  # not ours any more: nothing to give back
            self._lock.release()


class PostgresLeaderLock:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._connection: Connection | None = None
        self.holder = _holder()

    def acquire(self) -> bool:
        connection = self._database.engine.connect()
        got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY})
        if got.scalar():
            connection.commit()
            self._connection = connection
            return True
        connection.close()
        return False

    def refresh(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
        except Exception:
            self._connection = None
            return False
        return True

    def release(self) -> None:
        if self._connection is not None:
            self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
            self._connection.commit()
            self._connection.close()
            self._connection = None


class FileLeaderLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[str] | None = None
        self.holder = _holder()

    def acquire(self) -> bool:
        handle = self._path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(self.holder)
        handle.flush()
        self._file = handle
        return True

    def refresh(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def build_leader_lock(settings: Settings, database: Database) -> LeaderLock:
    if settings.redis_url:
        return RedisLeaderLock(settings.redis_url, settings.scheduler_lock_ttl_seconds)
    if not database.is_sqlite:
        return PostgresLeaderLock(database)
    name = make_url(database.url).database or "loyalty.db"
    return FileLeaderLock(Path(name).with_name(Path(name).name + ".scheduler.lock"))

"""What the import's parsing processes do with the database besides writing batches.

Each batch is parsed, then written, by one of the import's processes (`loyalty.importer`).
A process new to the pool lets go of the importing process's connections (`forked`). On
SQLite those processes take over the write-ahead log's checkpoints (`checkpoint`), so
that no batch's commit waits for one; a database in memory is written by the importing
process itself (`in_memory`).
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from loyalty.db import Database

__all__ = ["checkpoint", "forked", "in_memory"]


def forked(database: Database) -> None:
    """In a new parsing process: let go of the importing process's connections; on
    SQLite, the connections this process writes with leave checkpoints to `checkpoint`."""
    database.engine.dispose(close=False)
    if database.is_sqlite:
        event.listen(database.engine, "connect", _no_autocheckpoint)


def _no_autocheckpoint(dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def checkpoint(database: Database) -> None:
    """Copy the batches written so far from SQLite's log into the database, once the next
    batch's turn has come: a commit would otherwise do it (every 1,000 pages, which a
    batch is), holding up the next batch. Passive: it waits for no one. It runs in a
    thread of the parsing process, which parses its next batch meanwhile (SQLite lets go
    of the interpreter while it copies); one still running is not started again."""
    global _checkpointing
    if _checkpointing is not None:
        if not _checkpointing.done():
            return
        _checkpointing.result()  # a checkpoint that failed fails the batch after it
    _checkpointing = _checkpoints().submit(_checkpoint_now, database)


#: The parsing process's last checkpoint (`checkpoint`).
_checkpointing: Future[None] | None = None


@functools.cache
def _checkpoints() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix="checkpoint")


def _checkpoint_now(database: Database) -> None:
    connection = database.engine.raw_connection()
    try:
        # The driver connection is in autocommit mode (`loyalty.db`): no transaction.
        connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
    finally:
        connection.close()


def in_memory(database: Database) -> bool:
    """Whether the database lives in this process alone (SQLite in memory)."""
    url = database.engine.url
    name = url.database or ""
    return database.is_sqlite and (
        name in ("", ":memory:") or name.startswith("file::memory:") or "mode=memory" in str(url)
    )

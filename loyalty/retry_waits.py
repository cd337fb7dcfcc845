"""Delayed retries a worker holds, so that the relay leaves their rows to them.

A failed job is queued again with a delay (growing up to RETRY_MAX_BACKOFF_MS).
Without a note of it, the scheduler's relay would see the row still unprocessed and
queue it once more at each tick, starting a second retry chain (and, at its end, a
second dead letter). The note is one row per actor and row id, overwritten by each
retry: the relay skips the row until the retry is due and a relay interval more has
passed (the retry lost with Redis, say). Past that, a note holds nothing back, and the
relay tick drops it (`forget_retries`). The wake-up tick notes the enrollments it
queues the same way (`note_queued`), so that its next ticks do not queue them again while
the workers are still on their way to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loyalty.models import RetryWait

__all__ = ["forget_retries", "no_retry_waiting", "note_queued", "note_retry"]


def note_retry(session: Session, actor: str, row_id: int, due_at: datetime) -> None:
    """Record that `actor(row_id)` is queued again to run at `due_at`."""
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(RetryWait).values(actor=actor, row_id=row_id, due_at=due_at)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["actor", "row_id"], set_={"due_at": statement.excluded.due_at}
        )
    )


def note_queued(session: Session, actor: str, row_ids: Sequence[int], at: datetime) -> None:
    """Record that a tick queued `actor` for these rows at `at`: the next ticks leave them to
    that message until a relay interval has passed (see `no_retry_waiting`'s `since`)."""
    if not row_ids:
        return
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(RetryWait).values(
        [{"actor": actor, "row_id": row_id, "due_at": at} for row_id in row_ids]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["actor", "row_id"], set_={"due_at": statement.excluded.due_at}
        )
    )


def no_retry_waiting(
    actor: str, id_column: Any, cutoff: datetime, *, since: Any = None
) -> ColumnElement[bool]:
    """True for the rows with no retry of `actor` due after `cutoff`; with `since` (a column
    or time), only notes from then on count: a row queued for an earlier wake-up is queued
    again for a later one."""
    noted = [RetryWait.actor == actor, RetryWait.row_id == id_column, RetryWait.due_at > cutoff]
    if since is not None:
        noted.append(RetryWait.due_at >= since)
    return ~exists(select(RetryWait.row_id).where(*noted))


def forget_retries(session: Session, cutoff: datetime) -> int:
    """Drop the notes of retries due at or before `cutoff` (they hold no row back any more);
    how many."""
    result: Any = session.execute(delete(RetryWait).where(RetryWait.due_at <= cutoff))
    return int(result.rowcount or 0)

"""Delayed retries a worker holds, so that the relay leaves their rows to them.

A failed job is queued again with a delay (growing up to RETRY_MAX_BACKOFF_MS).
Without a note of it, the scheduler's relay would see the row still unprocessed and
queue it once more at each tick, starting a second retry chain (and, at its end, a
second dead letter). The note is one row per actor and row id, overwritten by each
retry: the relay skips the row until the retry is due and a relay interval more has
passed (the retry lost with Redis, say). Past that, a note holds nothing back, and the
relay tick drops it (`forget_retries`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loyalty.models import RetryWait

__all__ = ["forget_retries", "no_retry_waiting", "note_retry"]


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


def no_retry_waiting(actor: str, id_column: Any, cutoff: datetime) -> ColumnElement[bool]:
    """True for the rows with no retry of `actor` due after `cutoff`."""
    return ~exists(
        select(RetryWait.row_id).where(
            RetryWait.actor == actor, RetryWait.row_id == id_column, RetryWait.due_at > cutoff
        )
    )


def forget_retries(session: Session, cutoff: datetime) -> int:
    """Drop the notes of retries due at or before `cutoff` (they hold no row back any more);
    how many."""
    result: Any = session.execute(delete(RetryWait).where(RetryWait.due_at <= cutoff))
    return int(result.rowcount or 0)

"""A batch's messages inserted together: the steps keep their rows, the batch inserts them.

Run one by one, each message a step makes is its own insert. Within `messages_together`
(a batch of runs in one transaction) the send steps keep their rows instead
(`kept_together`), and the batch inserts them all at its end in one statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from loyalty.db import insert_ignore_ids
from loyalty.models import Message

__all__ = ["kept_together", "messages_together"]

#: Where a batch keeps the messages its steps make until its one insert.
_TOGETHER = "step_messages.together"


@contextmanager
def messages_together(session: Session) -> Iterator[list[int]]:
    """Within, the messages the steps make (but surveys, whose rows need theirs at once) are
    kept and inserted together at the end, in one statement, with the same ``ON CONFLICT
    DO NOTHING`` on their keys; yields the list their ids then join."""
    rows: list[dict[str, Any]] = []
    session.info[_TOGETHER] = rows
    made: list[int] = []
    try:
        yield made
    finally:
        session.info.pop(_TOGETHER, None)
    made += insert_ignore_ids(session, Message, rows, ["idempotency_key"], Message.id)


def kept_together(session: Session) -> list[dict[str, Any]] | None:
    """Where a step keeps a message's row for the batch's insert; None outside a batch."""
    rows: list[dict[str, Any]] | None = session.info.get(_TOGETHER)
    return rows

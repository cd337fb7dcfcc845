"""Outbox figures read from the message counters (`message_counts`, kept by a trigger on
`messages` in the transaction that changes each row: migration 0015).

Reading them costs a few hundred counter rows whatever the size of the outbox; the
figures are what counting the rows would say.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from loyalty.models import MessageCount
from loyalty.states import MessageState

__all__ = ["Count", "message_counts", "step_message_counts"]


@dataclass(frozen=True)
class Count:
    """Messages of one (journey, step, channel, state, suppression reason)."""

    journey_id: str | None
    step_id: str | None
    channel: str
    state: str
    reason: str
    n: int


def message_counts(session: Session, journey_id: str | None = None) -> list[Count]:
    """Every non-zero counter (of one journey when given); no journey reads as None."""
    total = func.sum(MessageCount.n)
    key = (
        MessageCount.journey_id,
        MessageCount.step_id,
        MessageCount.channel,
        MessageCount.state,
        MessageCount.reason,
    )
    query = select(*key, total).group_by(*key).having(total != 0)
    if journey_id is not None:
        query = query.where(MessageCount.journey_id == journey_id)
    return [
        Count(j or None, s or None, c, st, r if st == MessageState.SUPPRESSED else "", int(n))
        for j, s, c, st, r, n in session.execute(query)
    ]


def step_message_counts(session: Session, journey_id: str) -> list[tuple[str, str, str, int]]:
    """(step, state, suppression reason, messages) of one journey, over its channels."""
    summed: dict[tuple[str, str, str], int] = {}
    for count in message_counts(session, journey_id):
        key = (count.step_id or "", count.state, count.reason)
        summed[key] = summed.get(key, 0) + count.n
    return [(*key, n) for key, n in summed.items()]

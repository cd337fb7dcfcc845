"""Per-step entry counters of journeys, kept in the transaction that runs the step."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from loyalty.models import StepCount

__all__ = ["SHARDS", "count_entered", "counted_together", "entered_by_step"]

_TOGETHER = "step_counts.together"

#: Rows per (journey, step): workers running the same step at once lock different rows.
SHARDS = 8


def count_entered(session: Session, journey_id: str, step_id: str, enrollment_id: int) -> None:
    """One more enrollment entered the step (called once per step run, under its lock).

    Within `counted_together`, the count waits for the end of the batch instead.
    """
    together: Counter[tuple[str, str]] | None = session.info.get(_TOGETHER)
    if together is not None:
        together[(journey_id, step_id)] += 1
        return
    _add(session, journey_id, step_id, enrollment_id % SHARDS, 1)


@contextmanager
def counted_together(session: Session, shard: int) -> Iterator[Counter[tuple[str, str]]]:
    """Count a batch's step entries in one shard at its end, steps in a fixed order: a long
    batch transaction then holds no counter row while it runs, so batches running side by
    side never wait for, nor deadlock on, each other's counters. The counter it yields is
    the batch's (a caller whose savepoint rolled back puts back what it held before)."""
    together: Counter[tuple[str, str]] = Counter()
    session.info[_TOGETHER] = together
    try:
        yield together
    finally:
        session.info.pop(_TOGETHER, None)
    for (journey_id, step_id), n in sorted(together.items()):
        if n:
            _add(session, journey_id, step_id, shard % SHARDS, n)


def _add(session: Session, journey_id: str, step_id: str, shard: int, n: int) -> None:
    values = {"journey_id": journey_id, "step_id": step_id, "shard": shard, "n": n}
    session.execute(_upsert(session.get_bind().dialect.name), values)


@cache
def _upsert(dialect: str) -> Executable:
    """The counter's upsert for a dialect, built once (its values are parameters)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(StepCount).values(
        journey_id=bindparam("journey_id"),
        step_id=bindparam("step_id"),
        shard=bindparam("shard"),
        entered=bindparam("n"),
    )
    return statement.on_conflict_do_update(
        index_elements=["journey_id", "step_id", "shard"],
        set_={"entered": StepCount.entered + bindparam("n")},
    )


def entered_by_step(session: Session, journey_id: str) -> dict[str, int]:
    """How many enrollments entered each step of the journey."""
    rows = session.execute(
        select(StepCount.step_id, func.sum(StepCount.entered))
        .where(StepCount.journey_id == journey_id)
        .group_by(StepCount.step_id)
    )
    return {step: int(total or 0) for step, total in rows}

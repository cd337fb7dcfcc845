"""Per-step entry counters of journeys, kept in the transaction that runs the step."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from loyalty.models import StepCount

__all__ = ["SHARDS", "count_entered", "entered_by_step"]

#: Rows per (journey, step): workers running the same step at once lock different rows.
SHARDS = 8


def count_entered(session: Session, journey_id: str, step_id: str, enrollment_id: int) -> None:
    """One more enrollment entered the step (called once per step run, under its lock)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(StepCount).values(
        journey_id=journey_id, step_id=step_id, shard=enrollment_id % SHARDS, entered=1
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["journey_id", "step_id", "shard"],
            set_={"entered": StepCount.entered + 1},
        )
    )


def entered_by_step(session: Session, journey_id: str) -> dict[str, int]:
    """How many enrollments entered each step of the journey."""
    rows = session.execute(
        select(StepCount.step_id, func.sum(StepCount.entered))
        .where(StepCount.journey_id == journey_id)
        .group_by(StepCount.step_id)
    )
    return {step: int(total or 0) for step, total in rows}

"""The tables of what the console and metrics read: pauses, console actions, entry
refusals, step and message counts, scheduler ticks and split choices."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.model_base import Base, Id

__all__ = [
    "ConsoleAction",
    "EntryRefusal",
    "JourneyPause",
    "MessageCount",
    "SchedulerTick",
    "SplitChoice",
    "StepCount",
]


class JourneyPause(Base):
    """A journey stopped from the console: while `paused_at` is set, no new member enters."""

    __tablename__ = "journey_pauses"

    journey_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    paused_at: Mapped[datetime | None]
    paused_by: Mapped[str | None] = mapped_column(String(320))
    resumed_at: Mapped[datetime | None]
    resumed_by: Mapped[str | None] = mapped_column(String(320))


class ConsoleAction(Base):
    """What a console user did (pause, resume, replay…), who and when: append-only."""

    __tablename__ = "console_actions"
    __table_args__ = (Index("ix_console_actions_target", "target", "at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    at: Mapped[datetime]
    user_email: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(32))
    #: What it was done to: `journey:<id>`, `dead_letter:<id>`.
    target: Mapped[str] = mapped_column(String(160))


class EntryRefusal(Base):
    """Why a member last did not enter a journey when it was offered (audience, cooldown,
    paused): one row per (journey, member), rewritten only when the answer changes."""

    __tablename__ = "entry_refusals"
    __table_args__ = (UniqueConstraint("member_id", "journey_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(128))
    member_id: Mapped[int] = mapped_column(Id, ForeignKey("members.id"))
    occurrence: Mapped[str] = mapped_column(String(128))
    #: audience, cooldown or paused.
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime]


class StepCount(Base):
    """How many enrollments entered a journey's step, kept in the step's own transaction.

    Spread over a few shards by enrollment id, so workers running the same step at
    once do not queue on one row; the console adds the shards up.
    """

    __tablename__ = "journey_step_counts"

    journey_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    step_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entered: Mapped[int] = mapped_column(BigInteger, default=0)


class SchedulerTick(Base):
    """The last run of each scheduler job, written by the leader: the console shows it."""

    __tablename__ = "scheduler_ticks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Which scheduler ran it (host:pid:token).
    holder: Mapped[str] = mapped_column(String(160))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    queued: Mapped[int] = mapped_column(default=0)
    #: The exception's type when the run failed; None when it ran through.
    error: Mapped[str | None] = mapped_column(String(160))


class MessageCount(Base):
    """Messages per (journey, step, channel, state, suppression reason), kept by a trigger on
    `messages` (migration 0015, on PostgreSQL and SQLite) in the transaction that inserts,
    changes or deletes each row, so that the console's per-step figures and `/metrics` do not
    count millions of rows. A message of no journey counts under journey and step ''.

    A counter is spread over shards (one per database connection, modulo 8), each holding
    a part that may go below zero; a figure is the sum of its shards.
    """

    __tablename__ = "message_counts"

    journey_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    step_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: The first 64 characters of the error of a `suppressed` message (the rule that
    #: stopped it); empty for the other states.
    reason: Mapped[str] = mapped_column(String(64), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger, default=0)


class SplitChoice(Base):
    """The variant (or `holdout`) an enrollment got at each split step it went through, written
    in the transaction that runs the split; reports count each split by it."""

    __tablename__ = "split_choices"
    __table_args__ = (Index("ix_split_choices_journey_split", "journey_id", "split_id", "variant"),)

    enrollment_id: Mapped[int] = mapped_column(
        Id, ForeignKey("enrollments.id"), primary_key=True, autoincrement=False
    )
    split_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    journey_id: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str] = mapped_column(String(64))

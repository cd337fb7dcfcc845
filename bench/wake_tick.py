"""Wake-up tick benchmark: many waits that end together, until every enrollment ran.

DUE members entered a journey two days ago (a wait of two days, then an email to the
local outbox) in a throwaway PostgreSQL database; their waits are all over. Two
`loyalty worker` processes of four threads wait on a redis-server of their own. The
wake-up tick (`wake_enrollments`) then queues them a batch per message, and the time
from the tick's start until every enrollment ran is printed, with the tick's own
time. The same run, as the tick queued them before (one `run_enrollment` message
each), is the comparison, measured in the same run on the same rows: each run puts
the enrollments back as they were before it. Medians of RUNS runs of each.

Run with ``python -m bench.wake_tick [--due 5000]`` (the tick queues at most 5,000 a run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from sqlalchemy import delete, func, select, text

from automations import runtime
from automations.runtime import actors
from automations.runtime.broker import build_broker, embedded_worker
from automations.runtime.ticks import TICK_BATCH, enter_date_journeys, wake_enrollments
from bench.birthday_mail import TEMPLATE, birthdays_today
from bench.production import POSTGRES_URL, load_average, stack, wait_for_workers
from loyalty.app import App
from loyalty.clock import FrozenClock, SystemClock
from loyalty.models import Enrollment, Message
from loyalty.states import EnrollmentState

RUNS = 3
TIMEOUT_S = 600.0
JOURNEY = """id: waited
name: Waited
status: active
locale: en
trigger: {type: date, field: birthday, days_before: 0, at: "00:00"}
entry: {once_per: year}
steps:
  - {id: pause, type: wait, duration: 2d}
  - {id: greeting, type: send_email, template: birthday_mail}
"""
#: The waiting enrollments as entered, put back before each run.
SNAPSHOT = "bench_waiting"


def _journeys(folder: Path) -> Path:
    (folder / "templates" / "en").mkdir(parents=True)
    (folder / "waited.yaml").write_text(JOURNEY)
    (folder / "templates" / "en" / "birthday_mail.email.liquid").write_text(TEMPLATE)
    return folder


def _enter(app: App, due: int) -> None:
    """`due` members entered two days ago, waiting; a snapshot of their enrollments kept."""
    now = datetime.now(UTC)
    birthdays_today(app, due, on=(now - timedelta(days=2)).date())
    embedded = App(app.settings.model_copy(update={"redis_url": None}), app.database, app.clock)
    assert isinstance(app.clock, FrozenClock)
    app.clock.set(now - timedelta(days=2))
    runtime.configure(embedded)
    with embedded_worker(build_broker(embedded.settings), threads=2):
        entered = enter_date_journeys(embedded)
    assert entered == due, entered
    with app.database.transaction() as session:
        session.execute(text(f"CREATE TABLE {SNAPSHOT} AS SELECT * FROM enrollments"))


def _reset(app: App, redis_url: str) -> None:
    with app.database.transaction() as session:
        session.execute(delete(Message))
        session.execute(
            text(
                f"UPDATE enrollments e SET state = s.state, current_step = s.current_step,"
                f" next_run_at = s.next_run_at, context = s.context, exited_at = NULL,"
                f" exit_reason = NULL FROM {SNAPSHOT} s WHERE e.id = s.id"
            )
        )
    redis.Redis.from_url(redis_url).flushdb()


def _ran(app: App) -> int:
    with app.database.sessions() as session:
        return int(
            session.scalar(
                select(func.count(Enrollment.id)).where(
                    Enrollment.state == EnrollmentState.COMPLETED
                )
            )
            or 0
        )


def _one_message_each(app: App) -> int:
    """What the wake-up tick did before: one `run_enrollment` message per enrollment."""
    with app.database.sessions() as session:
        ids = session.scalars(
            select(Enrollment.id).where(
                Enrollment.state == EnrollmentState.WAITING,
                Enrollment.next_run_at <= app.clock.now(),
            )
        ).all()
    for enrollment_id in ids:
        actors.send("run_enrollment", enrollment_id)
    return len(ids)


def _timed(app: App, tick: Callable[[App], int], due: int) -> tuple[float, float]:
    """(seconds the tick took, seconds from its start until every enrollment ran)."""
    started = time.perf_counter()
    queued = tick(app)
    ticked = time.perf_counter() - started
    assert queued == due, queued
    while _ran(app) < due:
        if time.perf_counter() - started > TIMEOUT_S:
            raise SystemExit(f"timed out: {_ran(app)} of {due} ran")
        time.sleep(0.05)
    return ticked, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--due", type=int, default=TICK_BATCH)
    args = parser.parse_args()
    due = min(args.due, TICK_BATCH)
    with stack(_journeys, POSTGRES_URL) as bench:
        app = bench.app(
            FrozenClock(datetime.now(UTC)),
            redis_url=bench.redis_url,
            outbox_dir=bench.root / "outbox",
        )
        _enter(app, due)
        app.clock = SystemClock()
        runtime.configure(app)
        build_broker(app.settings)
        with bench.processes("worker"):
            wait_for_workers(bench.redis_url)
            figures: dict[str, list[tuple[float, float]]] = {"batched": [], "one each": []}
            for _ in range(RUNS):
                for name, tick in (("batched", wake_enrollments), ("one each", _one_message_each)):
                    _reset(app, bench.redis_url)
                    figures[name].append(_timed(app, tick, due))
            median = statistics.median
            for name, runs in figures.items():
                tick_s = median(t for t, _ in runs)
                all_s = median(a for _, a in runs)
                print(
                    f"{due:,} enrollments woken together, {name:<8}: tick {tick_s:.3f} s, "
                    f"all ran {all_s:.1f} s after it began ({due / all_s:.0f}/s; medians of "
                    f"{RUNS})  load average {load_average()}",
                    flush=True,
                )
            batched = median(a for _, a in figures["batched"])
            single = median(a for _, a in figures["one each"])
            print(f"one message each ÷ batched: {single / batched:.2f} (above 1: batches faster)")


if __name__ == "__main__":
    main()

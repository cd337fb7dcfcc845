"""Date tick benchmark: entering today's birthdays on PostgreSQL, and how it scales.

Loads members (COPY, `bench.date_scan`'s builder) into a throwaway database, DUE of
whom have their birthday at the tick's instant in a zone where it is that day,
with last year's enrollment for everyone; publishes `bench.birthday_mail`'s journey
(one email step). Then times the date tick (`enter_date_journeys`: the scan, the
inserts of the enrollments and their first steps queued on a redis-server of its
own), median of RUNS runs, each after the previous run's enrollments are deleted.
The ceiling, in the same run: a bare ``INSERT … SELECT`` of the same rows into the
same table. With workers, one more tick runs while two `loyalty worker` processes
of four threads wait, and the time until every first step ran is printed too.
The population then grows to the next size (no further birthdays) and all is
measured again: the tick should take the same time (goal: DUE entered < 2 s).

Run with ``python -m bench.date_tick --members 1000000 2000000 [--due 10000]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import psycopg
import redis
from sqlalchemy import delete, func, select, text

from automations import runtime
from automations.definition import DateTrigger
from automations.runtime.broker import build_broker
from automations.runtime.ticks import enter_date_journeys
from automations.triggers.date_scan import due_date_entries
from automations.versions import Published, latest_published
from bench.birthday_mail import birthday_journey
from bench.date_scan import NOW, ZONES, load
from bench.production import POSTGRES_URL, Stack, load_average, stack, wait_for_workers
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.models import Enrollment, EntryRefusal, Message
from loyalty.states import EnrollmentState

JOURNEY = "birthday_mail"
#: At NOW (10:00 UTC on 15 June) it is 15 June in these zones; not yet or no longer
#: in Pacific/Pago_Pago and Pacific/Kiritimati.
DUE_ZONES = [z for z in ZONES if z not in ("Pacific/Pago_Pago", "Pacific/Kiritimati")]
RUNS = 5
#: How long the worker processes get to run every first step.
WORKERS_TIMEOUT_S = 900.0


@dataclass
class Figures:
    members: int
    entered: int
    scan: float
    tick: float
    ceiling: float
    load: str
    first_steps: float | None = None
    workers_load: str = ""

    @property
    def ratio(self) -> float:
        return self.ceiling / self.tick

    def lines(self) -> list[str]:
        lines = [
            f"members {self.members:>9,}  entered {self.entered:,}  tick {self.tick:.3f} s "
            f"(scan {self.scan:.3f} s + inserts + first steps queued; medians of {RUNS})  "
            f"ceiling INSERT … SELECT of the same rows {self.ceiling:.3f} s  "
            f"ceiling ÷ tick {self.ratio:.2f}  load average {self.load}"
        ]
        if self.first_steps is not None:
            lines.append(
                f"  first steps through 2 `loyalty worker` processes x 4 threads: "
                f"{self.entered:,} ran {self.first_steps:.1f} s after the tick began "
                f"({self.entered / self.first_steps:.0f}/s)  load average {self.workers_load}"
            )
        return lines


def _reset(app: App, raw_url: str, redis_url: str) -> None:
    """Forget today's entries (enrollments, their messages, refusals, queued runs) so the tick
    runs again."""
    with app.database.transaction() as session:
        session.execute(delete(Message).where(Message.journey_id == JOURNEY))
        session.execute(
            delete(Enrollment).where(
                Enrollment.journey_id == JOURNEY, Enrollment.occurrence == "2026"
            )
        )
        session.execute(delete(EntryRefusal))
    with psycopg.connect(raw_url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) enrollments")
    redis.Redis.from_url(redis_url).flushdb()


def _tick(app: App) -> tuple[float, int]:
    started = time.perf_counter()
    entered = enter_date_journeys(app)
    return time.perf_counter() - started, entered


def _ceiling(app: App) -> float:
    """A bare INSERT … SELECT of the tick's rows into enrollments (rolled back)."""
    with app.database.engine.connect() as connection:
        started = time.perf_counter()
        connection.execute(
            text(
                "INSERT INTO enrollments (journey_id, member_id, occurrence, journey_version_id,"
                " state, current_step, next_run_at, context, entered_at)"
                " SELECT 'ceiling', member_id, occurrence, journey_version_id, state,"
                " current_step, next_run_at, context, entered_at FROM enrollments"
                " WHERE journey_id = :journey AND occurrence = '2026'"
                " ON CONFLICT DO NOTHING"
            ),
            {"journey": JOURNEY},
        )
        elapsed = time.perf_counter() - started
        connection.rollback()
    return elapsed


def _first_steps_done(app: App) -> int:
    with app.database.sessions() as session:
        return int(
            session.scalar(
                select(func.count(Enrollment.id)).where(
                    Enrollment.journey_id == JOURNEY,
                    Enrollment.occurrence == "2026",
                    Enrollment.state != EnrollmentState.ACTIVE,
                )
            )
            or 0
        )


def _through_workers(app: App, bench: Stack) -> float:
    """Seconds from the tick's start until worker processes ran every first step it queued."""
    with bench.processes("worker"):
        wait_for_workers(bench.redis_url)
        started = time.perf_counter()
        _, entered = _tick(app)
        while _first_steps_done(app) < entered:
            if time.perf_counter() - started > WORKERS_TIMEOUT_S:
                raise SystemExit(f"timed out: {_first_steps_done(app)} of {entered} ran")
            time.sleep(0.1)
        return time.perf_counter() - started


def measure(
    app: App,
    raw_url: str,
    redis_url: str,
    members: int,
    workers: Stack | None,
) -> Figures:
    scans: list[float] = []
    ticks: list[float] = []
    ceilings: list[float] = []
    entered = 0
    for _ in range(RUNS):
        _reset(app, raw_url, redis_url)
        scans.append(_scan(app))
        elapsed, entered = _tick(app)
        ticks.append(elapsed)
        ceilings.append(_ceiling(app))
    median = statistics.median
    figures = Figures(
        members, entered, median(scans), median(ticks), median(ceilings), load_average()
    )
    if workers is not None:
        _reset(app, raw_url, redis_url)
        figures.first_steps = _through_workers(app, workers)
        figures.workers_load = load_average()
    return figures


def _scan(app: App) -> float:
    """The scan alone (what `bench.date_scan` measures), for the tick's breakdown."""
    published = latest_published_journey(app)
    trigger = published.journey.trigger
    assert isinstance(trigger, DateTrigger)
    with app.database.sessions() as session:
        started = time.perf_counter()
        due_date_entries(session, JOURNEY, trigger, app.clock.now(), app.settings)
        return time.perf_counter() - started


def latest_published_journey(app: App) -> Published:
    with app.database.sessions() as session:
        return next(p for p in latest_published(session) if p.journey.id == JOURNEY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--no-workers", action="store_true", help="skip the worker processes")
    args = parser.parse_args()
    sizes = sorted(args.members)
    with stack(birthday_journey, POSTGRES_URL) as bench:
        raw_url = bench.database_url.replace("postgresql+psycopg://", "postgresql://")
        app = bench.app(FrozenClock(NOW), redis_url=bench.redis_url)
        runtime.configure(app)
        build_broker(app.settings)
        results: list[Figures] = []
        loaded = 0
        for size in sizes:
            started = time.perf_counter()
            due = args.due if loaded == 0 else 0
            load(
                raw_url,
                loaded,
                size,
                due,
                seed=size,
                live=[(NOW.month, NOW.day)],
                zones=DUE_ZONES,
                journey=JOURNEY,
                entered_today=False,
            )
            print(f"loaded {size - loaded:,} members in {time.perf_counter() - started:.1f} s")
            loaded = size
            workers = None if args.no_workers else bench
            figures = measure(app, raw_url, bench.redis_url, size, workers)
            results.append(figures)
            print("\n".join(figures.lines()), flush=True)
        worst = max(f.tick for f in results)
        met = worst < 2 and all(f.entered >= args.due for f in results)
        print(
            f"goal: {args.due:,} due members entered in < 2 s at every size: "
            f"{'met' if met else 'missed'} (slowest {worst:.3f} s)"
        )
        if len(results) > 1:
            first, last = results[0], results[-1]
            print(
                f"{last.members:,} / {first.members:,} members: "
                f"tick {last.tick / first.tick:.2f}, "
                f"ceiling {last.ceiling / first.ceiling:.2f}, ceiling ÷ tick "
                f"{first.ratio:.2f} → {last.ratio:.2f} (the time follows the due members, "
                f"not the population: goal < 1.2)"
            )


if __name__ == "__main__":
    main()

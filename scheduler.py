"""The one process that turns time into work (APScheduler 3, UTC), leader-locked.

Every job only finds due work and queues it for the workers. A second
scheduler waits on the leader lock and takes over when the first dies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import redis
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.exc import SQLAlchemyError

from automations.runtime.leader import LeaderLock, build_leader_lock
from automations.runtime.ticks import TICKS, Tick, check_tick_settings
from loyalty.app import App
from loyalty.metrics import TICK_FAILURES, TICK_LAST_RUN, TICK_SECONDS
from loyalty.scheduler_ticks import record_tick
from loyalty.settings import Settings

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

#: Seconds between attempts to take the leader lock while another scheduler holds it.
LEADER_POLL_SECONDS = 2.0
#: What an unreachable Redis or database raises from a lock operation.
LOCK_OUTAGES: tuple[type[Exception], ...] = (redis.RedisError, SQLAlchemyError, OSError)


class Scheduler:
    def __init__(
        self,
        app: App,
        lock: LeaderLock | None = None,
        *,
        poll_seconds: float = LEADER_POLL_SECONDS,
    ) -> None:
        check_tick_settings(app.settings)
        self.app = app
        self.poll_seconds = poll_seconds
        self.lock = lock or build_leader_lock(app.settings, app.database)
        self.is_leader = threading.Event()
        self._stop = threading.Event()
        self._jobs: BackgroundScheduler | None = None

    def _run_tick(self, tick: Tick) -> None:
        started = time.monotonic()
        started_at = self.app.clock.now()
        try:
            queued = tick.run(self.app)
        except Exception as exc:
            TICK_FAILURES.labels(tick.name).inc()
            log.exception("scheduler.tick_failed", extra={"tick": tick.name})
            self._note_tick(tick, started_at, 0, type(exc).__name__)
            return
        finally:
            TICK_SECONDS.labels(tick.name).observe(time.monotonic() - started)
        TICK_LAST_RUN.labels(tick.name).set(time.time())
        if queued:
            log.info("scheduler.tick", extra={"tick": tick.name, "queued": queued})
        self._note_tick(tick, started_at, queued, None)

    def _note_tick(self, tick: Tick, started: datetime, queued: int, error: str | None) -> None:
        """Keep the run for the console; a database that cannot take it costs only the note."""
        try:
            record_tick(
                self.app.database,
                tick.name,
                holder=self.lock.holder,
                started_at=started,
                finished_at=self.app.clock.now(),
                queued=queued,
                error=error,
            )
        except SQLAlchemyError as exc:
            log.warning(
                "scheduler.tick_not_noted", extra={"tick": tick.name, "error": type(exc).__name__}
            )

    def _start_jobs(self) -> None:
        jobs = BackgroundScheduler(timezone="UTC")
        for tick in TICKS:
            jobs.add_job(
                self._run_tick,
                "interval",
                seconds=tick.interval(self.app.settings),
                args=[tick],
                id=tick.name,
                max_instances=1,
                coalesce=True,
                # at once: APScheduler counts in real time, whatever the app's clock says
                next_run_time=datetime.now(UTC),
            )
        jobs.start()
        self._jobs = jobs

    def _stop_jobs(self) -> None:
        if self._jobs is not None:
            self._jobs.shutdown(wait=True)
            self._jobs = None

    def _lock_call(self, what: str, call: Callable[[], bool]) -> bool:
        """Run a lock operation; an unreachable Redis or database counts as not holding it."""
        try:
            return call()
        except LOCK_OUTAGES as exc:
            log.warning(
                "scheduler.lock_unreachable",
                extra={"holder": self.lock.holder, "during": what, "error": type(exc).__name__},
            )
            return False

    def run(self) -> None:
        """Wait for the lock, run the jobs while it is held; return when stop() is called.

        Losing Redis or the database (a restart, a network blip) never ends the
        process: the jobs stop while the lock cannot be confirmed, and the
        scheduler keeps trying to take it again.
        """
        refresh_every = max(1.0, self.app.settings.scheduler_lock_ttl_seconds / 3)
        try:
            while not self._stop.is_set():
                if not self._lock_call("acquire", self.lock.acquire):
                    self._stop.wait(self.poll_seconds)
                    continue
                log.info("scheduler.leader", extra={"holder": self.lock.holder})
                self.is_leader.set()
                self._start_jobs()
                while not self._stop.wait(refresh_every):
                    if not self._lock_call("refresh", self.lock.refresh):
                        log.warning("scheduler.lock_lost", extra={"holder": self.lock.holder})
                        break
                self._stop_jobs()
                self.is_leader.clear()
                self._release()
        finally:
            self._stop_jobs()
            self._release()

    def _release(self) -> None:
        try:
            self.lock.release()
        except LOCK_OUTAGES:  # nothing to give back that the lock's expiry will not free
            log.warning("scheduler.release_failed", extra={"holder": self.lock.holder})

    def stop(self) -> None:
        self._stop.set()


def describe(settings: Settings) -> list[str]:
    """One line per job, for `loyalty scheduler --list`."""
    check_tick_settings(settings)
    lines = []
    for tick in TICKS:
        seconds = tick.interval(settings)
        lines.append(f"{tick.name:<16} every {seconds:>5}s  active  {tick.description}")
    return lines

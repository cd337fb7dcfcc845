"""Pipeline benchmark: an event's way to its email, through real `loyalty worker` processes.

On PostgreSQL (BENCH_POSTGRES_URL, a server: a database of its own is made and dropped)
and a redis-server of its own, two `loyalty worker` processes of four threads run a
journey that mails a member when a `member.enrolled` event arrives, against the SendGrid
emulator. Prints:

1. what one event costs the database on its way to the email (statements and commits,
   counted in this process, per hop);
2. event → email accepted by the emulator, p50/p95/p99, at one event per 100 ms and one
   per 1.5 s, with EMAIL_BATCH_GATHER_MS=0 (the gathering delay is 1 s by design);
3. end-to-end journey emails/s for a burst of events, with gathering off and at its
   default, divided by the ceiling: bare Dramatiq no-op messages/s through workers of the
   same shape on the same broker (`bench.pipeline_noop`);
and the load average next to each figure.
Run with `python -m bench.pipeline [BURST] [LATENCY_EVENTS]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from automations import runtime
from automations.intake import queue_events, store_batch
from automations.runtime.broker import build_broker
from bench.birthday_mail import message_states
from bench.pipeline_journey import EVENT_TYPE, event_journey, mailable_members, one_event_to_email
from bench.production import POSTGRES_URL, Stack, load_average, stack, tree_cpu_seconds
from bench.soak_processes import WORKER_PROCESSES, WORKER_THREADS, Supervisor
from loyalty.app import App
from loyalty.event_types import EventInput
from loyalty.events import Recorded
from sandbox.sendgrid import SendGridSandbox

#: The shape of `loyalty worker` measured, and of the no-op ceiling's workers.
PROCESSES, THREADS = WORKER_PROCESSES, WORKER_THREADS
#: What the processes get besides `Stack.environment`'s.
WORKER_SETTINGS = {"MAX_MARKETING_EMAILS_PER_WEEK": "1000"}
#: Steady rates measured: seconds between two events.
INTERVALS_S = (0.1, 1.5)
#: Longest wait for the emails of one measure.
TIMEOUT_S = 600.0


def wait_until(done: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


class Run:
    """The database, broker, emulator and processes of one benchmark run."""

    def __init__(self, bench: Stack, app: App, sendgrid: SendGridSandbox) -> None:
        self.bench = bench
        self.root = bench.root
        self.app = app
        self.sendgrid = sendgrid
        self.redis_url = bench.redis_url
        self.members = iter(mailable_members(app, 20_000))
        self._events = 0
        #: When the emulator accepted each address's email, and the requests read for it.
        self._arrived: dict[str, float] = {}
        self._read = 0
        #: The `loyalty worker` processes running now.
        self.worker_pids: list[int] = []

    def environment(self, **extra: str) -> dict[str, str]:
        return self.bench.environment(sendgrid=self.sendgrid, **WORKER_SETTINGS, **extra)

    @contextmanager
    def workers(self, gather_ms: int) -> Iterator[None]:
        """`loyalty worker` processes with this gathering delay, up once they sent an email."""
        settings = {**WORKER_SETTINGS, "EMAIL_BATCH_GATHER_MS": str(gather_ms)}
        with self.bench.processes("worker", sendgrid=self.sendgrid, **settings) as supervisor:
            self.worker_pids = [m.process.pid for m in supervisor.running]
            self.send(1, timeout=60)
            yield

    def stored(self, count: int) -> dict[int, str]:
        """Store `count` events for fresh members (not queued yet); event id → address."""
        members = [next(self.members) for _ in range(count)]
        self._events += count
        inputs = [
            EventInput(EVENT_TYPE, m, id=f"e-{self._events}-{n}") for n, m in enumerate(members)
        ]
        rows = store_batch(self.app, inputs)
        return {
            r.row.id: f"{m}@example.com"
            for r, m in zip(rows, members, strict=True)
            if isinstance(r, Recorded)
        }

    def arrivals(self) -> dict[str, float]:
        """When the emulator accepted each address's email.

        Each request is read once: the bench polls this every 10 ms on the two cores the
        workers use, and parsing every body again on each poll took one of them.
        """
        requests = self.sendgrid.requests(path="/v3/mail/send")
        for request in requests[self._read :]:
            if request.status is None:
                break  # not answered yet: read again at the next poll
            self._read += 1
            if request.status != 202:
                continue
            for personalization in request.json()["personalizations"]:
                for to in personalization["to"]:
                    self._arrived.setdefault(to["email"], request.at)
        return self._arrived

    def send(self, count: int, interval: float = 0.0, timeout: float = TIMEOUT_S) -> list[float]:
        """Events for `count` fresh members, `interval` apart; each one's time to its email."""
        events = self.stored(count)
        queued: dict[str, float] = {}
        started = time.perf_counter()
        for n, (event_id, address) in enumerate(events.items()):
            pause = started + n * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            queued[address] = time.time()
            queue_events([event_id])
        wait_until(lambda: set(queued) <= set(self.arrivals()), f"{count} emails", timeout)
        arrived = self.arrivals()
        return [arrived[a] - at for a, at in queued.items()]


def percentiles(latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return (
        f"p50 {cuts[49]:.0f} ms, p95 {cuts[94]:.0f} ms, p99 {cuts[98]:.0f} ms, max {ms[-1]:.0f} ms"
    )


def noop_ceiling(run: Run, messages: int) -> Rate:
    """Bare Dramatiq no-op messages/s through workers of the same shape on the same Redis."""
    env = {**run.environment(), "BENCH_NOOP_REDIS_URL": run.redis_url}
    env["dramatiq_worker_timeout"] = str(run.app.settings.worker_timeout_ms)
    os.environ["BENCH_NOOP_REDIS_URL"] = run.redis_url
    from bench import pipeline_noop

    client = redis.Redis.from_url(run.redis_url)
    held = f"dramatiq:{pipeline_noop.QUEUE}.msgs"
    # Run from the project folder, where `bench` is importable.
    supervisor = Supervisor(env, Path(__file__).resolve().parents[1], run.root)
    argv = ["-m", "dramatiq", "bench.pipeline_noop", "--processes", str(PROCESSES)]
    noop = supervisor.start("noop", [sys.executable, *argv, "--threads", str(THREADS)])
    try:
        pipeline_noop.noop.send(0)
        wait_until(lambda: client.hlen(held) == 0, "the no-op workers", timeout=60)
        cpu_before = tree_cpu_seconds([noop.process.pid])
        started = time.perf_counter()
        for n in range(messages):
            pipeline_noop.noop.send(n)
        wait_until(lambda: client.hlen(held) == 0, "the no-op messages")
        seconds = time.perf_counter() - started
        cpu = tree_cpu_seconds([noop.process.pid]) - cpu_before
        return Rate(messages / seconds, cpu / messages)
    finally:
        supervisor.stop_all()
        client.close()


@dataclass(frozen=True)
class Rate:
    """Work done per second, and the CPU seconds the worker processes spent per item."""

    per_second: float
    cpu_per_item: float


def burst(run: Run, count: int) -> Rate:
    """Emails/s from queueing `count` stored events at once to the last email accepted."""
    events = run.stored(count)
    cpu_before = tree_cpu_seconds(run.worker_pids)
    started_at = time.time()
    queue_events(list(events))
    wait_until(lambda: set(events.values()) <= set(run.arrivals()), f"{count} burst emails")
    cpu = tree_cpu_seconds(run.worker_pids) - cpu_before
    arrived = run.arrivals()
    last = max(arrived[a] for a in events.values())
    return Rate(count / (last - started_at), cpu / count)


def ratio(size: int, name: str, rate: Rate, ceiling: Rate) -> None:
    print(
        f"burst of {size} events → emails, {name}: {rate.per_second:.0f} emails/s ÷ "
        f"{ceiling.per_second:.0f} no-op Dramatiq messages/s = "
        f"{rate.per_second / ceiling.per_second:.3f} (goal ≥ 0.4); the workers' CPU "
        f"{rate.cpu_per_item * 1000:.2f} ms per email ({ceiling.cpu_per_item * 1000:.2f} ms "
        f"per no-op message); load average {load_average()}"
    )


def main(burst_size: int, latency_events: int) -> None:
    with (
        SendGridSandbox(duplicate_rate=0.0) as sendgrid,
        stack(event_journey, POSTGRES_URL) as bench,
    ):
        app = bench.app(
            redis_url=None,
            email_batch_gather_ms=0,
            sendgrid_api_key=sendgrid.api_key,
            sendgrid_base_url=sendgrid.base_url,
            email_from="club@example.com",
            postal_address="1 Main St, Springfield",
            max_marketing_emails_per_week=1000,
        )
        run = Run(bench, app, sendgrid)
        counts = [one_event_to_email(app, next(run.members), f"count-{n}") for n in range(3)]
        print(f"one event → email, in this process on PostgreSQL: {counts[-1]}")
        app.settings = app.settings.model_copy(update={"redis_url": bench.redis_url})
        runtime.configure(app)
        build_broker(app.settings)
        ceiling = noop_ceiling(run, burst_size * 5)
        print(
            f"ceiling: {ceiling.per_second:.0f} no-op Dramatiq messages/s, {PROCESSES} x {THREADS} "
            f"workers on the same Redis; load average {load_average()}"
        )
        with run.workers(gather_ms=0):
            for interval in INTERVALS_S:
                count = latency_events if interval < 1 else max(10, latency_events // 5)
                latencies = run.send(count, interval)
                print(
                    f"event → email accepted, one event per {interval * 1000:.0f} ms, "
                    f"{count} events, {PROCESSES} x {THREADS} workers, "
                    f"EMAIL_BATCH_GATHER_MS=0: {percentiles(latencies)} (goal p99 < 50 ms); "
                    f"load average {load_average()}"
                )
            ratio(burst_size, "EMAIL_BATCH_GATHER_MS=0", burst(run, burst_size), ceiling)
        with run.workers(gather_ms=1000):
            ratio(burst_size, "gathering 1 s", burst(run, burst_size), ceiling)
        print(f"messages: {dict(message_states(app))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("burst", nargs="?", type=int, default=2000, help="events in the burst")
    parser.add_argument(
        "latency_events", nargs="?", type=int, default=200, help="events timed one by one"
    )
    options = parser.parse_args()
    main(options.burst, options.latency_events)

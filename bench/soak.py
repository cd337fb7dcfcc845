"""`make soak`: the production shape under chaos, for a bounded time, then an audit.

A fresh PostgreSQL database, a redis-server of its own, the provider emulators
with 5 % server errors and 1 % dropped answers, and the real processes as an
operator runs them: three `loyalty worker`, two `loyalty scheduler` and one
`loyalty serve` that receives the providers' webhooks. Members are imported and
a stream of shop events is fed in while workers are killed with SIGKILL (and
replaced) every few seconds and Redis is killed and started again once. Then
feeding stops, the soak waits for the program to go quiet and compares the
database with what the emulators received:

- lost: messages the database says left (sent, unknown, claimed) that no
  provider accepted, journey steps passed without their message or points, and
  journeys that should have started and did not;
- duplicated at the providers: one message id accepted more than once;
- duplicate ledger effects: an order earning twice, clawbacks beyond refunds,
  a once-only journey entered twice, balances that are not their entries' sum;
- stuck claimed: messages claimed by a worker that never recorded an outcome.

Exit status 0 when lost, duplicated, duplicate ledger effects and stuck
claimed are all 0 and the program went quiet in time, else 1.

`python -m bench.soak [--short] [--seconds S] [--kills N] [--members M] ...`
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from sqlalchemy import select, text

from bench.production import SetupError, process_environment, temporary_database
from bench.soak_audit import audit
from bench.soak_data import EventStream, SoakMember, members, write_members
from bench.soak_feed import Cli, Feeder
from bench.soak_processes import Managed, RedisServer, Supervisor, free_port, loyalty_command
from bench.soak_progress import progress, sendgrid_log, twilio_log
from bench.soak_report import Outcome, report, say
from loyalty.db import Database
from loyalty.models import Member
from loyalty.settings import Settings, load_settings
from sandbox.faults import FaultConfig
from sandbox.stack import SandboxStack

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432"

#: Settings the soak gives every process besides the emulators' and its own services'.
#: Shorter than the defaults so that recovery (the relay, send retries, provider
#: timeouts) happens within a bounded run; everything else is the product's default.
SOAK_SETTINGS = {
    "EVENT_RELAY_AFTER_SECONDS": "15",
    "SEND_RETRY_BASE_SECONDS": "2",
    "SEND_RETRY_MAX_SECONDS": "20",
    "PROVIDER_TIMEOUT_SECONDS": "5",
    "CRM_PUSH_MINUTES": "1",
    "SCHEDULER_TICK_SECONDS": "outbox_relay:5,due_enrollments:5",
    "LOG_LEVEL": "INFO",
}
#: Quiet for this many checks in a row (one a second) counts as quiescence.
QUIET_CHECKS = 3


@dataclass(frozen=True)
class Plan:
    seconds: float
    kills: int
    members: int
    quiesce_timeout: float
    events_per_batch: int
    workers: int = 3
    schedulers: int = 2
    redis_down_s: float = 3.0
    error_rate: float = 0.05
    drop_rate: float = 0.01
    seed: int | None = None


#: Quiescence timeouts: retried sends and work lost with Redis wait for the scheduler's
#: relay tick (every 5 s here, for work older than EVENT_RELAY_AFTER_SECONDS), so the short
#: soak allows two ticks; the full one also outlasts the 2-minute claim lease after which a
#: claim whose request never left goes back to pending.
FULL = Plan(seconds=240, kills=40, members=300, quiesce_timeout=240, events_per_batch=20)
SHORT = Plan(seconds=40, kills=6, members=100, quiesce_timeout=60, events_per_batch=12)


# -- the services ---------------------------------------------------------------------


def environment(
    sandbox: SandboxStack, database_url: str, redis_url: str, public_url: str, folder: Path
) -> dict[str, str]:
    """The parent's environment without any program setting, then the soak's."""
    services = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JOURNEYS_DIR": str(ROOT / "journeys"),
        "PUBLIC_BASE_URL": public_url,
        "OUTBOX_DIR": str(folder / "outbox"),
        "PYTHONUNBUFFERED": "1",
    }
    return process_environment(**{**sandbox.environment(), **SOAK_SETTINGS, **services})


def settings_for(env: dict[str, str]) -> Settings:
    """The same settings the processes read (no `.env` file, no inherited variables)."""
    known = set(Settings.model_fields)
    values: dict[str, Any] = {k.lower(): v for k, v in env.items() if k.lower() in known}
    return load_settings(_env_file=None, **values)


# -- the soak ---------------------------------------------------------------------------


class Soak:
    def __init__(
        self, plan: Plan, stack: contextlib.ExitStack, postgres_url: str, keep_logs: Path | None
    ) -> None:
        self.plan = plan
        self.keep_logs = keep_logs
        self.stack = stack
        self.postgres_url = postgres_url
        self.seed = plan.seed if plan.seed is not None else random.randrange(1_000_000)
        self.rng = random.Random(self.seed)

    def run(self) -> Outcome:
        plan, stack = self.plan, self.stack
        started = time.monotonic()
        folder = Path(tempfile.mkdtemp(prefix="loyalty-soak-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        if self.keep_logs is not None:
            target = self.keep_logs
            stack.callback(lambda: shutil.copytree(folder / "logs", target, dirs_exist_ok=True))
        for name in ("logs", "redis", "tls", "feed", "outbox"):
            (folder / name).mkdir()
        database_url = stack.enter_context(temporary_database(self.postgres_url))
        redis_server = RedisServer(free_port(), folder / "redis")
        redis_server.start()
        stack.callback(redis_server.kill)
        public_url = f"http://127.0.0.1:{free_port()}"
        faults = FaultConfig(error_rate=plan.error_rate, drop_rate=plan.drop_rate, seed=self.seed)
        sandbox = SandboxStack.create(
            faults=faults,
            sendgrid_webhook_url=f"{public_url}/webhooks/sendgrid",
            twilio_inbound_url=f"{public_url}/webhooks/twilio/inbound",
            twilio_segments_per_second=50.0,
            tls_dir=folder / "tls",
        )
        stack.enter_context(sandbox)
        env = environment(sandbox, database_url, redis_server.url, public_url, folder)
        settings = settings_for(env)
        cli = Cli(env, folder)
        stack.callback(cli.stop)
        say(
            f"seed {self.seed}; database {database_url.rsplit('/', 1)[1]}; "
            f"redis {redis_server.url}; serve {public_url}; folder {folder}"
        )

        cli.must("db", "upgrade")
        cli.must("journeys", "publish")
        everyone, referees = self._import(cli, folder, database_url, plan.members)

        supervisor = Supervisor(env, folder, folder / "logs")
        stack.callback(supervisor.stop_all)
        port = public_url.rsplit(":", 1)[1]
        supervisor.start("serve", [*loyalty_command(), "serve", "--port", port])
        _wait_healthy(public_url, supervisor)
        worker = [*loyalty_command(), "worker", "--processes", "1", "--threads", "4"]
        for _ in range(plan.workers):
            supervisor.start("worker", worker)
        for _ in range(plan.schedulers):
            supervisor.start("scheduler", [*loyalty_command(), "scheduler"])
        say(f"set up in {time.monotonic() - started:.1f} s; feeding for {plan.seconds:.0f} s")

        stream = EventStream(self.rng, everyone, referees)
        feeder = Feeder(cli, stream, folder / "feed", plan)
        stack.callback(feeder.stopping.set)
        feeder.start()
        self._chaos(supervisor, redis_server, worker, Database(database_url))
        left = feeder.finish()
        if not redis_server.running:
            redis_server.start()
        fed_at = time.monotonic()
        say(f"feeding stopped ({feeder.lines} events sent); waiting for quiescence")

        database = Database(database_url)
        try:
            quiet_after, last = self._quiesce(database, settings, sandbox, supervisor, fed_at)
            providers = {"email": sendgrid_log(sandbox.sendgrid), "sms": twilio_log(sandbox.twilio)}
            findings = audit(database, settings, datetime.now(UTC), providers, stream.orders)
        finally:
            database.dispose()
        return Outcome(
            findings=findings,
            providers=providers,
            quiet_after=quiet_after,
            last_progress=last,
            kills=supervisor.kills,
            redis_restarts=redis_server.restarts,
            restarted=supervisor.unexpected,
            feeder=feeder,
            files_not_ingested=left,
            seconds=time.monotonic() - started,
        )

    def _import(
        self, cli: Cli, folder: Path, database_url: str, count: int
    ) -> tuple[list[SoakMember], list[str]]:
        """Members, then referees who name some of them by referral code."""
        first = members(self.rng, count)
        write_members(folder / "members.csv", first)
        cli.must("members", "import", str(folder / "members.csv"))
        database = Database(database_url)
        try:
            with database.sessions() as session:
                rows = session.execute(select(Member.external_id, Member.referral_code)).all()
                codes = {external_id: code for external_id, code in rows}
        finally:
            database.dispose()
        referees = [
            replace(m, referred_by=self.rng.choice(first).external_id)
            for m in members(self.rng, max(1, count // 10), prefix="r", start=count)
        ]
        write_members(folder / "referees.csv", referees, codes)
        cli.must("members", "import", str(folder / "referees.csv"))
        return first + referees, [m.external_id for m in referees]

    def _chaos(
        self, supervisor: Supervisor, redis_server: RedisServer, worker: list[str], db: Database
    ) -> None:
        """Kill workers on schedule, restart Redis once, keep every role running."""
        plan = self.plan
        start = time.monotonic()
        step = plan.seconds / max(plan.kills, 1)
        kill_at = sorted(start + (i + self.rng.uniform(0.1, 0.9)) * step for i in range(plan.kills))
        redis_down_at: float | None = start + plan.seconds * 0.4
        redis_up_at: float | None = None
        report_at = start + 15
        try:
            while (now := time.monotonic()) < start + plan.seconds or kill_at:
                if kill_at and now >= kill_at[0]:
                    kill_at.pop(0)
                    self._kill_a_worker(supervisor, worker, now)
                if redis_down_at is not None and now >= redis_down_at:
                    say("redis: killed")
                    redis_server.kill()
                    redis_down_at, redis_up_at = None, now + plan.redis_down_s
                if redis_up_at is not None and now >= redis_up_at:
                    redis_server.start()
                    redis_server.restarts += 1
                    redis_up_at = None
                    say("redis: started again")
                for name in supervisor.replace_dead():
                    say(f"restarted a process that ended on its own: {name}")
                if now >= report_at:
                    report_at = now + 15
                    say(f"{now - start:.0f} s: {supervisor.kills} kills; {_counts(db)}")
                time.sleep(0.1)
        finally:
            db.dispose()
            if redis_up_at is not None:
                redis_server.start()
                redis_server.restarts += 1

    def _kill_a_worker(self, supervisor: Supervisor, worker: list[str], now: float) -> None:
        alive = [w for w in supervisor.of("worker") if w.alive]
        busy = [w for w in alive if now - w.started > 2.0] or alive
        if busy:
            supervisor.kill(self.rng.choice(busy))
        supervisor.start("worker", worker)

    def _quiesce(
        self,
        database: Database,
        settings: Settings,
        sandbox: SandboxStack,
        supervisor: Supervisor,
        since: float,
    ) -> tuple[float | None, str]:
        deadline = since + self.plan.quiesce_timeout
        quiet_since: float | None = None
        checks = 0
        last = ""
        report_at = since + 5
        while time.monotonic() < deadline:
            for name in supervisor.replace_dead():
                say(f"restarted a process that ended on its own: {name}")
            state = progress(
                database, settings, datetime.now(UTC), sandbox.sendgrid, sandbox.twilio
            )
            last = state.describe()
            if time.monotonic() >= report_at:
                report_at = time.monotonic() + 10
                say(f"{time.monotonic() - since:.0f} s after feeding: {last}")
            if state.quiet:
                quiet_since = quiet_since or time.monotonic()
                checks += 1
                if checks >= QUIET_CHECKS:
                    return quiet_since - since, last
            else:
                quiet_since, checks = None, 0
            time.sleep(1.0)
        return None, last


def _counts(database: Database) -> str:
    with database.engine.connect() as connection:
        events = connection.execute(text("SELECT count(*), count(processed_at) FROM events")).one()
        states = connection.execute(
            text(
                "SELECT state, count(*) FROM messages WHERE channel IN ('email', 'sms') "
                "GROUP BY state ORDER BY state"
            )
        ).all()
    by_state = " ".join(f"{s}={n}" for s, n in states)
    return f"events {events[1]}/{events[0]} processed; messages {by_state or 'none'}"


def _wait_healthy(public_url: str, supervisor: Supervisor, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{public_url}/healthz", timeout=1) as response,
        ):
            if response.status == 200:
                return
        serve: list[Managed] = supervisor.of("serve")
        if serve and not serve[0].alive:
            raise SetupError(f"loyalty serve ended: {serve[0].log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise SetupError(f"loyalty serve did not answer {public_url}/healthz in {timeout:.0f} s")


# -- the command ----------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse(argv: list[str] | None) -> tuple[Plan, str, Path | None]:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=summary)
    parser.add_argument("--short", action="store_true", help="the short soak that `make test` runs")
    parser.add_argument("--seconds", type=float, help=f"feeding time (default {FULL.seconds:.0f})")
    parser.add_argument("--kills", type=int, help=f"worker kills (default {FULL.kills})")
    parser.add_argument("--members", type=int, help=f"members imported (default {FULL.members})")
    parser.add_argument("--quiesce-timeout", type=float, help="seconds to wait for quiescence")
    parser.add_argument("--events-per-batch", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--redis-down", type=float, help="seconds Redis stays down")
    parser.add_argument("--error-rate", type=float, help="share of injected 5xx (0.05)")
    parser.add_argument("--drop-rate", type=float, help="share of dropped answers (0.01)")
    parser.add_argument("--seed", type=int, help="seed for members, events, kills and faults")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="server, without a database")
    parser.add_argument(
        "--keep-logs", type=Path, metavar="FOLDER", help="copy the processes' logs there at the end"
    )
    args = parser.parse_args(argv)
    plan = SHORT if args.short else FULL
    changes = {
        "seconds": args.seconds,
        "kills": args.kills,
        "members": args.members,
        "quiesce_timeout": args.quiesce_timeout,
        "events_per_batch": args.events_per_batch,
        "workers": args.workers,
        "redis_down_s": args.redis_down,
        "error_rate": args.error_rate,
        "drop_rate": args.drop_rate,
        "seed": args.seed,
    }
    plan = replace(plan, **{k: v for k, v in changes.items() if v is not None})
    return plan, args.postgres_url.rstrip("/"), args.keep_logs


def main(argv: list[str] | None = None) -> int:
    plan, postgres_url, keep_logs = parse(argv)
    # SIGINT too: a shell starts background jobs with it ignored, and Python keeps that.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    say(
        f"soak: {plan.seconds:.0f} s of feeding, {plan.kills} worker kills, {plan.members} "
        f"members, {plan.workers} workers, {plan.schedulers} schedulers, 1 Redis restart, "
        f"faults {plan.error_rate:.0%} errors and {plan.drop_rate:.0%} drops"
    )
    try:
        with contextlib.ExitStack() as stack:
            outcome = Soak(plan, stack, postgres_url, keep_logs).run()
            passed = report(outcome, plan)
    except SetupError as exc:  # a process that would not start, a database not created
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; everything the soak started was stopped", file=sys.stderr)
        return 130
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

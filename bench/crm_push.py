"""CRM push benchmark: 100,000 changed members to HubSpot, then to Salesforce (Bulk 2.0).

HubSpot's emulator enforces 190 requests per rolling 10 s, so 1,000 batch calls cannot
take less than 1,000 / 19 = 52.6 s (`bench.rate_floor`). Goals, with the machine busy
(one spinning process per core besides the push, `--busy`): exactly 1,000 calls, wall
time at most 1.1 times that floor, no 429s; then, nothing having changed (and the
spinners stopped), the 100,000 members compared in under 5 s with no call. Each
emulator runs in its own process, so it does not share a GIL with the push. Run with
`python -m bench.crm_push [--members N] [--only hubspot] [--busy N] [--database-url URL]`.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.rate_floor import busy, load_average, rolling_window_floor_s
from crm_sync.adapters import make_adapter
from crm_sync.runs import run_push
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database, upgrade
from loyalty.models import Member
from loyalty.settings import load_settings
from sandbox.emulator import Emulator
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.salesforce_org import mapped_custom_fields

HUBSPOT_LIMIT_PER_10S = 190
GOAL_RATIO = 1.1
#: Seconds to compare 100,000 unchanged members (scaled to --members).
GOAL_UNCHANGED_S_PER_100K = 5.0


def _serve(name: str, conn: Connection) -> None:
    """Child process: one emulator, answering `stats`, `clear` and `stop` from the parent."""
    emulator: Emulator
    if name == "hubspot":
        emulator = HubSpotSandbox(
            ten_secondly_limit=HUBSPOT_LIMIT_PER_10S, daily_limit=10**8, search_per_second=None
        ).start()
        conn.send({"base_url": emulator.base_url, "token": emulator.access_token})
    else:
        sf = SalesforceSandbox(custom_fields=mapped_custom_fields(), daily_api_limit=10**8).start()
        conn.send({"base_url": sf.base_url, "token": sf.access_token, "ca": str(sf.ca_file)})
        emulator = sf
    while True:
        command = conn.recv()
        if command == "stats":
            seen = emulator.requests()
            conn.send(
                {
                    "calls": len(seen),
                    "by_path": Counter(r.path for r in seen),
                    "status_429": sum(1 for r in seen if r.status == 429),
                    "contacts": len(emulator.contacts()),
                }
            )
        elif command == "clear":
            emulator.recorder.clear()
            conn.send(True)
        else:
            emulator.stop()
            return


def _members(database: Database, count: int, now: datetime) -> None:
    rows: list[dict[str, Any]] = []
    for n in range(count):
        rows.append(
            {
                "external_id": f"m-{n}",
                "email": f"member{n}@example.com",
                "phone": f"+4860{n % 10_000_000:07d}",
                "first_name": "Anna",
                "last_name": f"Nowak{n}",
                "tier": "bronze",
                "referral_code": f"R{n:09d}",
                "points_balance": n % 1000,
                "lifetime_points": n % 5000,
                "email_consent": n % 2 == 0,
                "attributes": {},
                "enrolled_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
        if len(rows) == 10_000:
            with database.transaction() as session:
                session.execute(insert(Member), rows)
            rows = []
    if rows:
        with database.transaction() as session:
            session.execute(insert(Member), rows)


def _ask(conn: Connection, command: str) -> Any:
    conn.send(command)
    return conn.recv()


def bench(
    crm: str,
    folder: Path,
    members: int,
    spinners: int | None,
    database_url: str | None,
    concurrency: int | None = None,
) -> bool:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(crm, child), daemon=True)
    process.start()
    info = parent.recv()
    now = datetime.now(UTC)
    database = Database(database_url or f"sqlite:///{folder / f'{crm}.db'}")
    upgrade(database)
    _members(database, members, now)
    if crm == "hubspot":
        overrides: dict[str, Any] = {
            "hubspot_access_token": info["token"],
            "hubspot_base_url": info["base_url"],
        }
    else:
        overrides = {
            "salesforce_instance_url": info["base_url"],
            "salesforce_access_token": info["token"],
            "salesforce_ca_bundle": info["ca"],
        }
    if concurrency is not None:
        overrides["crm_push_concurrency"] = concurrency
    settings = load_settings(database_url=database.url, redis_url=None, **overrides)
    app = App(settings, database, FrozenClock(now))
    make_adapter(app, crm).ensure_schema()
    _ask(parent, "clear")
    with busy(spinners) as spinning:
        started = time.perf_counter()
        report = run_push(app, crm)
        wall = time.perf_counter() - started
        changed_load = load_average()
        stats = _ask(parent, "stats")
    _ask(parent, "clear")
    started = time.perf_counter()
    run_push(app, crm)
    unchanged_wall = time.perf_counter() - started
    unchanged_load = load_average()
    unchanged_calls = _ask(parent, "stats")["calls"]
    parent.send("stop")
    process.join(10)
    database.dispose()
    goal_s = GOAL_UNCHANGED_S_PER_100K * members / 100_000
    print(f"{report.summary()} ({spinning} spinning processes beside the push)")
    if crm == "hubspot":
        floor = rolling_window_floor_s(members // 100, HUBSPOT_LIMIT_PER_10S, 10.0)
        ratio = wall / floor
        ok = stats["calls"] == members // 100 and ratio <= GOAL_RATIO and stats["status_429"] == 0
        print(
            f"  (a) {members:,} changed members: {wall:.1f} s, {stats['calls']:,} API calls "
            f"(goal {members // 100:,}), {ratio:.3f} x the {floor:.1f} s rate-limit floor "
            f"(goal <= {GOAL_RATIO}); 429s {stats['status_429']} (goal 0); "
            f"contacts {stats['contacts']:,}; load average {changed_load}"
        )
    else:
        paths = ", ".join(
            f"{path.rsplit('/v59.0/', 1)[-1]} x{n}" for path, n in stats["by_path"].items()
        )
        ok = report.landed == members
        print(
            f"  (a) {members:,} changed members: {wall:.1f} s, {stats['calls']:,} API calls "
            f"({paths}); contacts {stats['contacts']:,}; load average {changed_load}"
        )
    print(
        f"  (b) {members:,} unchanged members: compared in {unchanged_wall:.2f} s "
        f"(goal < {goal_s:.1f} s), {unchanged_calls} API calls (goal 0); "
        f"load average {unchanged_load}"
    )
    return ok and unchanged_calls == 0 and unchanged_wall < goal_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--only", choices=["hubspot", "salesforce"])
    parser.add_argument(
        "--busy", type=int, default=None, help="spinning processes (default: one per core)"
    )
    parser.add_argument(
        "--database-url", help="an empty database, with --only (default: a SQLite file)"
    )
    parser.add_argument(
        "--concurrency", type=int, help="calls in flight (default: CRM_PUSH_CONCURRENCY's)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        for crm in ("hubspot", "salesforce"):
            if args.only in (None, crm):
                ok = (
                    bench(
                        crm,
                        Path(folder),
                        args.members,
                        args.busy,
                        args.database_url,
                        args.concurrency,
                    )
                    and ok
                )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

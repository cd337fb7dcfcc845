"""Birthday scan benchmark: time to select today's members on PostgreSQL, and how it scales.

Loads 1,000,000 members (COPY) into a throwaway database, of whom a fixed number
have a birthday on one of the dates live somewhere on Earth at the scan instant,
with last year's enrollment for everyone and today's for half the matches,
times ``due_date_entries`` for a birthday trigger (median of several runs), then
adds members up to 2,000,000 with no further birthday on those dates and times it
again. The scan reads only the matching members through ``ix_members_birthday``,
so the ratio should stay near 1 (goal < 1.2; goal for the time < 1 s).

Run with ``python -m bench.date_scan [--url postgresql+psycopg://postgres@127.0.0.1:5432]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import create_engine, event, text

from automations.definition.models import DateTrigger
from automations.triggers.date_rules import celebrations_at, month_days_celebrated_on
from automations.triggers.date_scan import due_date_entries
from loyalty.db import Database, upgrade
from loyalty.settings import load_settings

#: The scan instant: 10:00 UTC, when 14, 15 and 16 June are all live somewhere.
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)
#: Members whose birthday falls on a live date (a random 1M has about 8,200).
MATCHES = 8_000
FIRST, SECOND = 1_000_000, 2_000_000
RUNS = 9
CHUNK = 50_000
ZONES = [
    None,
    "UTC",
    "Europe/Warsaw",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "America/St_Johns",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Tokyo",
    "Africa/Casablanca",
]
COLUMNS = (
    "external_id, tier, points_balance, lifetime_points, referral_code, orders_count, "
    "total_spent, attributes, enrolled_at, created_at, updated_at, time_zone, "
    "birth_year, birth_month, birth_day"
)
TRIGGER = DateTrigger(type="date", field="birthday")


def _live_month_days() -> set[tuple[int, int]]:
    return {
        pair
        for celebration in celebrations_at(NOW, TRIGGER.days_before)
        for pair in month_days_celebrated_on(celebration, "feb28")
    }


def _line(n: int, month_day: tuple[int, int], zone: str | None, rng: random.Random) -> str:
    enrolled = "2024-01-01 00:00:00"
    return "\t".join(
        (
            f"b-{n}",
            "bronze",
            "0",
            "0",
            f"B{n:010d}",
            "0",
            "0",
            "{}",
            enrolled,
            enrolled,
            enrolled,
            zone if zone is not None else r"\N",
            str(rng.randint(1950, 2008)),
            str(month_day[0]),
            str(month_day[1]),
        )
    )


def load(
    url: str,
    start: int,
    stop: int,
    matches: int,
    seed: int,
    *,
    live: Sequence[tuple[int, int]] | None = None,
    zones: Sequence[str | None] = ZONES,
    journey: str = "birthday",
    entered_today: bool = True,
) -> None:
    """COPY members `start`..`stop`; the first `matches` have a birthday on a `live` date
    (default: every date live at NOW) in one of `zones`, the others on no date live at NOW.

    Last year's `journey` (version row 1) entered everyone; with `entered_today`, an
    earlier tick today entered every other match.
    """
    rng = random.Random(seed)
    live_at_now = _live_month_days()
    live = sorted(live if live is not None else live_at_now)
    others = [
        (d.month, d.day)
        for d in (date(2024, 1, 1) + timedelta(days=n) for n in range(366))
        if (d.month, d.day) not in live and (d.month, d.day) not in live_at_now
    ]
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        with cursor.copy(f"COPY members ({COLUMNS}) FROM STDIN") as copy:
            for low in range(start, stop, CHUNK):
                lines = []
                for n in range(low, min(low + CHUNK, stop)):
                    match = n - start < matches
                    pair = rng.choice(live) if match else rng.choice(others)
                    zone = rng.choice(zones) if match else rng.choice(ZONES)
                    lines.append(_line(n, pair, zone, rng))
                copy.write("\n".join(lines) + "\n")
        cursor.execute(
            "INSERT INTO enrollments (journey_id, member_id, occurrence, journey_version_id,"
            " state, context, entered_at)"
            " SELECT %s, id, '2025', 1, 'completed', '{}', '2025-06-15'"
            " FROM members WHERE id > %s AND id <= %s",
            (journey, start, stop),
        )
        if entered_today:
            cursor.execute(
                "INSERT INTO enrollments (journey_id, member_id, occurrence, journey_version_id,"
                " state, context, entered_at)"
                " SELECT %s, id, '2026', 1, 'active', '{}', %s"
                " FROM members WHERE id > %s AND id <= %s AND id %% 2 = 0",
                (journey, NOW, start, start + matches),
            )
    # Statistics and the visibility map as a settled database has them.
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) members")
        connection.execute("VACUUM (ANALYZE) enrollments")


def measure(database: Database) -> tuple[float, int, int]:
    """(median seconds, members on live dates, due entries) of the birthday scan."""
    settings = load_settings(database_url=database.url, redis_url=None)
    times = []
    entries = []
    for run in range(RUNS + 1):
        with database.sessions() as session:
            started = time.perf_counter()
            entries = due_date_entries(session, "birthday", TRIGGER, NOW, settings)
            elapsed = time.perf_counter() - started
        if run:  # the first run warms the caches
            times.append(elapsed)
    live = _live_month_days()
    with database.engine.connect() as connection:
        candidates = connection.execute(
            text(
                "SELECT count(*) FROM members WHERE "
                + " OR ".join(f"(birth_month = {m} AND birth_day = {d})" for m, d in live)
            )
        ).scalar_one()
    return statistics.median(times), int(candidates), len(entries)


def plan(database: Database) -> list[str]:
    """The index and join nodes PostgreSQL chose for the scan's query."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    settings = load_settings(database_url=database.url, redis_url=None)
    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        with database.sessions() as session:
            due_date_entries(session, "birthday", TRIGGER, NOW, settings)
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    statement, parameters = captured[-1]
    with database.engine.connect() as connection:
        lines = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars()
        return [line.strip() for line in lines if "Scan" in line or "Join" in line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    base = parser.parse_args().url.rstrip("/")
    name = f"loyalty_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(f"{base}/{name}")
    raw_url = f"{base}/{name}".replace("postgresql+psycopg://", "postgresql://")
    try:
        upgrade(database)
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO journey_versions (id, journey_id, version, content_hash,"
                    " definition, published_at) VALUES (1, 'birthday', 1, '', '{}', now())"
                )
            )
        started = time.perf_counter()
        load(raw_url, 0, FIRST, MATCHES, seed=1)
        print(f"loaded {FIRST:,} members in {time.perf_counter() - started:.1f} s")
        first, candidates, due = measure(database)
        print(f"members {FIRST:>9,}  on live dates {candidates:,}  due {due:,}  scan {first:.4f} s")
        print("plan: " + " | ".join(plan(database)))

        started = time.perf_counter()
        load(raw_url, FIRST, SECOND, 0, seed=2)
        print(f"loaded {SECOND - FIRST:,} more members in {time.perf_counter() - started:.1f} s")
        second, candidates, due = measure(database)
        print(
            f"members {SECOND:>9,}  on live dates {candidates:,}  due {due:,}  scan {second:.4f} s"
        )
        print("plan: " + " | ".join(plan(database)))
        print(f"goal: scan < 1 s at 1M: {'met' if first < 1 else 'missed'} ({first:.4f} s)")
        ratio = second / first
        print(f"ratio 2M/1M: {ratio:.2f} (goal < 1.2: {'met' if ratio < 1.2 else 'missed'})")
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()

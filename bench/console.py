"""Console benchmark: time to render the journey page and the member page on PostgreSQL with
1,000,000 members and 10,000,000 messages (goal: under 300 ms each), and to scrape
`/metrics` (goal: under 1 s; the count of the rows it replaced is timed as its ceiling).

Loads a throwaway database with the shipped journeys published, one birthday
enrollment per member (a tenth of them waiting), and the messages spread over
the journeys' message steps and states, ten per member; the message-count
triggers are switched off during the load and their counters filled in one
statement, as migration 0015 does for existing rows. Then signs in to the
console in-process and times each page and the `/metrics` scrape (median of
several), printed with the load average.

Run with ``python -m bench.console [--members N] [--messages N] [--url postgresql+psycopg://…]``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from automations.versions import publish
from loyalty.app import App
from loyalty.db import Database, upgrade
from loyalty.settings import load_settings
from loyalty.users import create_user
from web.app import create_app

GOAL_MS = 300.0
RUNS = 7
PASSWORD = "benchmark password"
JOURNEYS = Path(__file__).resolve().parent.parent / "journeys"
#: (journey, step, channel) the messages are spread over.
STEPS = [
    ("birthday_bonus", "birthday_email", "email"),
    ("birthday_bonus", "birthday_sms", "sms"),
    ("points_expiring", "reminder_email", "email"),
    ("welcome", "welcome_email", "email"),
    ("post_purchase_nps", "survey_email", "email"),
]
STATES = ["sent"] * 6 + ["suppressed", "deferred", "failed", "unknown"]
#: What migration 0015 runs to count the rows that exist when its trigger is created.
BACKFILL = """
INSERT INTO message_counts (journey_id, step_id, channel, state, reason, shard, n)
SELECT coalesce(journey_id, ''), coalesce(step_id, ''), channel, state,
       CASE WHEN state = 'suppressed' THEN substr(coalesce(error, ''), 1, 64) ELSE '' END,
       0, count(*)
FROM messages
GROUP BY 1, 2, 3, 4, 5
"""
#: What the scrape counted before the counters: messages by journey, channel and state.
ROW_COUNT = """
SELECT coalesce(journey_id, 'none'), channel, state, count(*) FROM messages GROUP BY 1, 2, 3
"""
#: The scrape's goal: well inside Prometheus's usual 10 s scrape timeout.
METRICS_GOAL_MS = 1000.0


def _load(database: Database, members: int, messages: int) -> None:
    steps = ", ".join(f"('{j}', '{s}', '{c}')" for j, s, c in STEPS)
    states = ", ".join(f"'{s}'" for s in STATES)
    statements = [
        f"""
        INSERT INTO members (external_id, email, phone, tier, points_balance, lifetime_points,
            referral_code, orders_count, total_spent, attributes, enrolled_at, created_at,
            updated_at, email_consent, sms_consent, birth_month, birth_day)
        SELECT 'm-' || g, 'm' || g || '@example.com', '+1555' || lpad(g::text, 7, '0'),
            'bronze', 100, 100, 'R' || g, 1, 10, '{{}}', now(), now(), now(),
            g % 5 <> 0, g % 3 = 0, 1 + g % 12, 1 + g % 28
        FROM generate_series(1, {members}) g
        """,
        f"""
        INSERT INTO enrollments (journey_id, member_id, occurrence, journey_version_id, state,
            current_step, next_run_at, context, entered_at)
        SELECT 'birthday_bonus', g, '2026', (SELECT id FROM journey_versions
            WHERE journey_id = 'birthday_bonus' ORDER BY version DESC LIMIT 1),
            CASE WHEN g % 10 = 0 THEN 'waiting' ELSE 'completed' END,
            CASE WHEN g % 10 = 0 THEN 'has_sms_consent' ELSE NULL END,
            NULL, '{{}}', now() - (g % 60) * interval '1 day'
        FROM generate_series(1, {members}) g
        """,
        "ALTER TABLE messages DISABLE TRIGGER USER",
        f"""
        WITH steps(journey_id, step_id, channel) AS (VALUES {steps}),
             numbered AS (SELECT row_number() OVER () - 1 AS i, * FROM steps)
        INSERT INTO messages (idempotency_key, member_id, journey_id, step_id, channel, purpose,
            state, attempts, error, decisions, created_at, updated_at)
        SELECT 'k-' || g, 1 + g % {members}, s.journey_id, s.step_id, s.channel, 'marketing',
            (ARRAY[{states}])[1 + (g / 7) % {len(STATES)}], 1,
            CASE WHEN (ARRAY[{states}])[1 + (g / 7) % {len(STATES)}] = 'suppressed'
                 THEN 'no_consent' END,
            '{{"decision": "send"}}', now() - (g % 90) * interval '1 day', now()
        FROM generate_series(1, {messages}) g JOIN numbered s ON s.i = g % {len(STEPS)}
        """,
        BACKFILL,
        "ALTER TABLE messages ENABLE TRIGGER USER",
    ]
    with database.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))
    # What autovacuum does after a load: statistics, and the visibility map that lets the
    # console's counts read their indexes only.
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def _median_ms(client: TestClient, path: str, expect: str) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        page = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert page.status_code == 200 and expect in page.text, (path, page.status_code)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=10_000_000)
    args = parser.parse_args()
    name = f"loyalty_bench_console_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{args.url}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(f"{args.url}/{name}")
    try:
        upgrade(database)
        settings = load_settings(
            database_url=database.url, journeys_dir=JOURNEYS, console_secret="b" * 40
        )
        app = App(settings, database)
        publish(app)
        started = time.perf_counter()
        _load(database, args.members, args.messages)
        print(
            f"loaded {args.members:,} members and {args.messages:,} messages "
            f"in {time.perf_counter() - started:.0f} s"
        )
        with database.transaction() as session:
            create_user(session, "bench@example.com", "operator", PASSWORD, now=app.clock.now())
        with TestClient(create_app(app)) as client:
            form = client.get("/console/sign-in").text
            token = re.search(r'name="csrf" value="([^"]+)"', form)
            assert token is not None
            client.post(
                "/console/sign-in",
                data={"csrf": token.group(1), "email": "bench@example.com", "password": PASSWORD},
            )
            member_id = args.members // 2
            for title, path, expect in (
                ("journey page (birthday_bonus)", "/console/journeys/birthday_bonus", "has_sms"),
                ("member page", f"/console/members/{member_id}", f"m-{member_id}"),
                ("journeys list", "/console/journeys", "birthday_bonus"),
            ):
                ms = _median_ms(client, path, expect)
                print(f"{title}: {ms:.0f} ms (goal < {GOAL_MS:.0f} ms; ratio {ms / GOAL_MS:.2f})")
            ms = _median_ms(client, "/metrics", "loyalty_messages{")
            print(
                f"/metrics scrape: {ms:.0f} ms (goal < {METRICS_GOAL_MS:.0f} ms; "
                f"ratio {ms / METRICS_GOAL_MS:.2f})"
            )
        started = time.perf_counter()
        with database.engine.connect() as connection:
            connection.execute(text(ROW_COUNT)).all()
        ceiling = (time.perf_counter() - started) * 1000
        print(f"counting the rows instead (the ceiling): {ceiling:.0f} ms")
        print("load average: " + " ".join(f"{n:.2f}" for n in os.getloadavg()))
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()

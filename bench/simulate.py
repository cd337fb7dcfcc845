"""Simulator benchmark: a year of the shipped journeys for 1,000 and 10,000 members.

Builds a live-looking program in a throwaway SQLite database: the journeys of
`journeys/` (birthday, points expiry, welcome, post-purchase NPS, referral and
reward-code journeys) plus a win-back journey on `last_order_at`, and members
with birthdays spread over the year, time zones around the world, consents,
points lots that expire during the year and a last order. An events file adds
orders (about two per member over the year) and the enrolment of one member in
twenty, who joins during the year. Then it
times `simulate` over 365 days for each size and prints the seconds, the time
per member and their ratio (goal: 10,000 members under 60 s, and the time per
member at 10,000 no more than ~1.2 times that at 1,000), and as a ceiling the
time the same run takes with no member at all (the clock's own walk). Each figure
comes with its CPU seconds and the load average: on a shared machine the wall
time grows with the load, the CPU time much less.

Run with `python -m bench.simulate [MEMBERS ...] [--days N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from automations.simulate import simulate
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database, upgrade
from loyalty.logs import configure_logging
from loyalty.models import LedgerEntry, Member
from loyalty.settings import load_settings

START = datetime(2026, 1, 1, tzinfo=UTC)
SHIPPED = Path(__file__).resolve().parent.parent / "journeys"
ZONES = [
    "Europe/Warsaw",
    "Europe/London",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Kolkata",
    None,
]
WIN_BACK = """\
# yaml-language-server: $schema=schema.json
id: win_back
name: Win-back
description: Sixty days after the last order, a reminder with a small bonus.
status: active
locale: en
locales: [en, pl]
trigger: {type: date, field: last_order_at, days_after: 60, at: "11:00"}
audience: {field: email_consent, eq: true}
entry: {every_time: true}
goal: {event: order.completed, within: 30d}
steps:
  - {id: bonus, type: award_points, amount: 75, reason: We miss you, expires_in: 30d}
  - {id: miss_you, type: send_email, template: win_back}
"""
WIN_BACK_EMAIL = """\
---
subject: "We miss you, {{ member.first_name | default: 'friend' }}"
---
<p>{{ award.points }} points are waiting until {{ award.expires_at | date: "%B %-d" }}.</p>
{% render 'email_footer' %}
"""


def journeys_folder(root: Path) -> Path:
    """The shipped journeys and templates, plus a win-back journey."""
    folder = root / "journeys"
    shutil.copytree(SHIPPED, folder)
    (folder / "win_back.yaml").write_text(WIN_BACK, encoding="utf-8")
    for locale in ("en", "pl"):
        path = folder / "templates" / locale / "win_back.email.liquid"
        path.write_text(WIN_BACK_EMAIL, encoding="utf-8")
    return folder


def _member(n: int, rng: random.Random) -> dict[str, Any]:
    enrolled = START - timedelta(days=rng.randint(30, 900), minutes=rng.randint(0, 1439))
    orders = rng.randint(0, 8)
    last_order = START - timedelta(days=rng.randint(1, 200)) if orders else None
    birthday = datetime(2000, 1, 1) + timedelta(days=rng.randint(0, 365))
    email_consent = rng.random() < 0.8
    return {
        "id": n + 1,
        "external_id": f"m-{n:06d}",
        "email": f"member{n}@example.com",
        "phone": f"+1415{n:07d}" if rng.random() < 0.6 else None,
        "first_name": rng.choice(["Ann", "Bob", "Cal", "Dora", "Ewa", "Jan", None]),
        "locale": rng.choice(["en", "en", "pl"]),
        "time_zone": rng.choice(ZONES),
        "birth_month": birthday.month if rng.random() < 0.9 else None,
        "birth_day": birthday.day,
        "birth_year": rng.choice([1956, 1972, 1988, 2000, 2004]),  # leap years: 29 Feb exists
        "tier": "bronze",
        "points_balance": 0,
        "lifetime_points": 0,
        "referral_code": f"R{n:09d}",
        "orders_count": orders,
        "total_spent": Decimal(orders * 40),
        "last_order_at": last_order,
        "email_consent": email_consent,
        "sms_consent": email_consent and rng.random() < 0.5,
        "attributes": {},
        "enrolled_at": enrolled,
        "created_at": enrolled,
        "updated_at": enrolled,
    }


def _lots(member: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """One to three earned lots, expiring during the year."""
    lots = []
    for k in range(rng.randint(0, 3)):
        points = rng.choice([40, 120, 300, 650])
        earned = START - timedelta(days=rng.randint(1, 360))
        lots.append(
            {
                "member_id": member["id"],
                "delta": points,
                "kind": "earn",
                "reason": "Order",
                "idempotency_key": f"bench:{member['id']}:{k}",
                "expires_at": earned + timedelta(days=365),
                "remaining": points,
                "created_at": earned,
            }
        )
    balance = sum(lot["delta"] for lot in lots)
    member["points_balance"] = member["lifetime_points"] = balance
    member["tier"] = "silver" if balance >= 1000 else "bronze"
    return lots


def build(root: Path, members: int, days: int, seed: int = 7) -> tuple[App, Path]:
    """A source database with `members` members, and an events file over `days` days."""
    rng = random.Random(seed)
    database = Database(f"sqlite:///{root / 'live.db'}")
    upgrade(database)
    rows = [_member(n, rng) for n in range(members)]
    lots = [lot for row in rows for lot in _lots(row, rng)]
    # One in twenty joins during the period: no orders yet, and a `member.enrolled` event.
    newcomers = rows[: members // 20]
    for row in newcomers:
        joined_at = START + timedelta(seconds=rng.randrange(days * 86400))
        row.update(enrolled_at=joined_at, created_at=joined_at, updated_at=joined_at)
        row.update(orders_count=0, total_spent=Decimal(0), last_order_at=None)
        row.update(points_balance=0, lifetime_points=0, tier="bronze")
    lots = [lot for lot in lots if lot["member_id"] > len(newcomers)]
    with database.transaction() as session:
        for low in range(0, len(rows), 2000):
            session.execute(insert(Member), rows[low : low + 2000])
        for low in range(0, len(lots), 2000):
            session.execute(insert(LedgerEntry), lots[low : low + 2000])
    events = root / "events.jsonl"
    with events.open("w", encoding="utf-8") as out:
        for n in range(members * 2):
            buyer = rows[rng.randrange(members)]
            member = buyer["external_id"]
            # A newcomer's orders come after they join.
            at = max(
                START + timedelta(seconds=rng.randrange(days * 86400)),
                buyer["enrolled_at"] + timedelta(hours=rng.randint(1, 300)),
            )
            total = rng.choice([0, 15, 40, 90, 240])
            data = {"order_id": f"o-{n}", "total": total, "currency": "USD"}
            order = {"type": "order.completed", "member": member, "id": f"o-{n}", "at": _iso(at)}
            out.write(json.dumps({**order, "data": data}) + "\n")
        for row in newcomers:
            joined = {
                "type": "member.enrolled",
                "member": row["external_id"],
                "id": f"j-{row['id']}",
            }
            out.write(json.dumps({**joined, "at": _iso(row["enrolled_at"]), "data": {}}) + "\n")
    settings = load_settings(
        database_url=database.url,
        redis_url=None,
        journeys_dir=journeys_folder(root),
        outbox_dir=root / "outbox",
        log_level="ERROR",
    )
    return App(settings, database, FrozenClock(START)), events


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def measure(members: int, days: int) -> tuple[float, float, int]:
    """(seconds, CPU seconds, timeline rows) of simulating `days` days for `members` members."""
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-simulate-") as folder:
        app, events = build(Path(folder), members, days)
        started, cpu = time.perf_counter(), time.process_time()
        result = simulate(
            app,
            start=START,
            end=START + timedelta(days=days) - timedelta(seconds=1),
            events_file=events,
        )
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        app.database.dispose()
    return elapsed, cpu, len(result.records)


def _load() -> str:
    return "load average " + " ".join(f"{n:.2f}" for n in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("members", nargs="*", type=int, default=[1_000, 10_000])
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    configure_logging("ERROR")
    empty, empty_cpu, _ = measure(0, args.days)
    print(
        f"members {0:>7,}  {args.days} days  {empty:7.1f} s  (CPU {empty_cpu:.1f} s; "
        f"the clock's walk alone)  {_load()}"
    )
    figures = []
    for members in args.members:
        elapsed, cpu, rows = measure(members, args.days)
        figures.append((members, elapsed))
        print(
            f"members {members:>7,}  {args.days} days  {elapsed:7.1f} s  (CPU {cpu:.1f} s)  "
            f"{elapsed / members * 1000:6.2f} ms/member  {rows:,} timeline rows  {_load()}"
        )
    if len(figures) >= 2:
        (small, t_small), (large, t_large) = figures[0], figures[-1]
        ratio = (t_large / large) / (t_small / small)
        print(
            f"time per member {large:,} vs {small:,}: ratio {ratio:.2f} "
            f"(goal <= 1.2: {'met' if ratio <= 1.2 else 'missed'})"
        )
        if large >= 10_000:
            print(
                f"goal: {large:,} members x {args.days} days < 60 s: "
                f"{'met' if t_large < 60 else 'missed'} ({t_large:.1f} s)"
            )


if __name__ == "__main__":
    main()

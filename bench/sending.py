"""Sending benchmark: due outbox rows to the SendGrid and Twilio emulators.

First the production shape: a birthday journey mails EMAILS members due together,
through `loyalty scheduler` and two `loyalty worker` processes of four threads on
PostgreSQL (BENCH_POSTGRES_URL, a server; a database of its own is made and dropped)
and a redis-server of its own. Prints requests per 1,000 emails (goal: one request
per 1,000 emails that share a template) and emails per second from the tick to the
last request. Then, in this process on SQLite, emails per second from due rows
(`flush_emails`), and SMS per second with pacing off.
Run with `python -m bench.sending [EMAILS] [SMS]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench.birthday_mail import birthday_journey, birthdays_today, message_states
from bench.outbox_rows import due_messages, promo_version
from bench.production import POSTGRES_URL, load_average, stack
from channels.delivery import deliver
from channels.email_batches import flush_emails
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database, upgrade
from loyalty.settings import load_settings
from sandbox.sendgrid import SendGridSandbox
from sandbox.twilio import TwilioSandbox

#: How long the worker processes get to send every email.
WORKERS_TIMEOUT_S = 900.0


def through_workers(emails: int) -> None:
    """Birthday emails due together, sent by real scheduler and worker processes."""
    with SendGridSandbox(duplicate_rate=0.0) as sendgrid:
        with stack(birthday_journey, POSTGRES_URL) as bench:
            app = bench.app()
            birthdays_today(app, emails)
            started, started_at = time.perf_counter(), time.time()
            with bench.processes("worker", "scheduler", sendgrid=sendgrid):
                while message_states(app)["sent"] < emails:
                    if time.perf_counter() - started > WORKERS_TIMEOUT_S:
                        raise SystemExit(f"timed out: {dict(message_states(app))}")
                    time.sleep(0.2)
        requests = sendgrid.requests(path="/v3/mail/send")
        elapsed = requests[-1].at - started_at if requests else float("nan")
        floor = -(-emails // 1000)  # SendGrid's 1,000 personalizations a request
        print(
            f"worker processes (2 x 4 threads, PostgreSQL, Redis): {emails} birthday emails in "
            f"{len(requests)} requests = {len(requests) / emails * 1000:.2f} requests per "
            f"1,000 emails (floor {floor / emails * 1000:.2f}: {floor} requests; goal 1.00 per "
            f"1,000); {emails / elapsed:.0f} emails/s from the start of the processes to the "
            f"last request; load average {load_average()}"
        )


def main(emails: int, sms: int) -> None:
    through_workers(emails)
    with (
        tempfile.TemporaryDirectory() as folder,
        SendGridSandbox(duplicate_rate=0.0) as sendgrid,
        TwilioSandbox(segments_per_second=1_000_000.0) as twilio,
    ):
        database = Database(f"sqlite:///{Path(folder) / 'bench.db'}")
        upgrade(database)
        settings = load_settings(
            database_url=database.url,
            sendgrid_api_key=sendgrid.api_key,
            sendgrid_base_url=sendgrid.base_url,
            twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token,
            twilio_base_url=twilio.base_url,
            twilio_from="+15005550006",
            twilio_messages_per_second=1_000_000,
            sms_quiet_hours="",
            max_marketing_emails_per_week=1000,
            max_marketing_sms_per_day=1000,
        )
        app = App(settings, database, FrozenClock(datetime(2026, 5, 4, 12, tzinfo=UTC)))
        version = promo_version(app, Path(folder))
        due_messages(app, version, emails, "email")
        started = time.perf_counter()
        sent = 0
        while batch := flush_emails(app):  # each flush claims up to FLUSH_LIMIT
            sent += batch
        elapsed = time.perf_counter() - started
        requests = len(sendgrid.requests(path="/v3/mail/send"))
        print(
            f"emails: {sent} in {elapsed:.2f} s = {sent / elapsed:.0f} emails/s; "
            f"{requests} requests = {requests / sent * 1000:.2f} requests per 1,000 emails "
            f"(goal 1.00)"
        )
        ids = due_messages(app, version, sms, "sms", start=emails)
        started = time.perf_counter()
        # As worker threads would: each SMS is one request, so they overlap.
        with ThreadPoolExecutor(max_workers=settings.worker_threads) as pool:
            states = list(pool.map(lambda message_id: deliver(app, message_id), ids))
        elapsed = time.perf_counter() - started
        print(
            f"sms: {states.count('sent')} of {len(ids)} sent in {elapsed:.2f} s = "
            f"{len(ids) / elapsed:.0f} SMS/s with {settings.worker_threads} threads (pacing off)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("emails", nargs="?", type=int, default=10_000, help="emails due together")
    parser.add_argument("sms", nargs="?", type=int, default=1_000, help="SMS sent unpaced")
    options = parser.parse_args()
    main(options.emails, options.sms)

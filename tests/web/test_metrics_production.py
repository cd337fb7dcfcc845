"""The production shape: `loyalty serve`, `loyalty worker` and `loyalty scheduler` on PostgreSQL
and Redis send, defer and suppress a journey's messages through the SendGrid and Twilio
emulators; `/metrics`, scraped over HTTP, says what the database holds."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import func, select

from bench.outbox_rows import JOURNEY, TEMPLATES
from bench.soak_processes import Supervisor, free_port, loyalty_command
from loyalty.app import App
from loyalty.models import Enrollment, Event, Message, Suppression
from loyalty.states import MessageState
from sandbox.sendgrid import SendGridSandbox
from sandbox.stack import SANDBOX_SENDER
from sandbox.twilio import TwilioSandbox
from tests.conftest import REDIS_URL
from tests.processes import answers, wait_for

#: States a message of this run ends in: nothing is left pending or claimed.
SETTLED = {MessageState.SENT, MessageState.DEFERRED, MessageState.SUPPRESSED}


def zone_at(local_hour: int) -> str:
    """A fixed-offset zone whose wall clock reads about `local_hour` now."""
    utc_hour = datetime.now(UTC).hour
    offset = (local_hour - utc_hour + 12) % 24 - 12  # -12 … 11 hours east of UTC
    # Etc/GMT zones count the other way round: Etc/GMT-2 is two hours east.
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"


def samples(text: str, name: str) -> list[Sample]:
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def by_labels(found: Iterable[Sample], *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels[k] for k in keys): s.value for s in found}


def message_rows(app: App) -> dict[tuple[str, str, str], int]:
    with app.database.sessions() as session:
        rows = session.execute(
            select(Message.journey_id, Message.channel, Message.state, func.count()).group_by(
                Message.journey_id, Message.channel, Message.state
            )
        ).all()
    return {(str(j), c, s): n for j, c, s, n in rows}


@pytest.mark.integration
def test_metrics_scraped_after_a_run_match_the_database(
    postgres_app: App,
    redis_url: str,
    sendgrid_sandbox: SendGridSandbox,
    twilio_sandbox: TwilioSandbox,
    tmp_path: Path,
) -> None:
    database = postgres_app.database
    journeys = tmp_path / "journeys"
    (journeys / "templates" / "en").mkdir(parents=True)
    (journeys / "promo.yaml").write_text(textwrap.dedent(JOURNEY).lstrip(), encoding="utf-8")
    for key, body in TEMPLATES.items():
        (journeys / "templates" / f"{key}.liquid").write_text(body, encoding="utf-8")
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    port, worker_port = free_port(), free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": REDIS_URL,
        "JOURNEYS_DIR": str(journeys),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "SENDGRID_API_KEY": sendgrid_sandbox.api_key,
        "SENDGRID_BASE_URL": sendgrid_sandbox.base_url,
        "EMAIL_FROM": "club@example.com",
        "POSTAL_ADDRESS": "Example Shop, 1 Sample Street, Warsaw",
        "TWILIO_ACCOUNT_SID": twilio_sandbox.account_sid,
        "TWILIO_AUTH_TOKEN": twilio_sandbox.auth_token,
        "TWILIO_BASE_URL": twilio_sandbox.base_url,
        "TWILIO_FROM": SANDBOX_SENDER,
        "SMS_QUIET_HOURS": "21:00-09:00",
        "EMAIL_QUIET_HOURS": "",
        "EVENT_RELAY_AFTER_SECONDS": "1",
        "SCHEDULER_TICK_SECONDS": "outbox_relay:1,due_enrollments:1",
        "RETRY_MIN_BACKOFF_MS": "10",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    loyalty = loyalty_command()

    def run(*args: str) -> None:
        done = subprocess.run([*loyalty, *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    # Given four members: one in daytime, one at night (SMS quiet hours), one without
    # consent and one whose address and number are on the suppression list
    day, night = zone_at(14), zone_at(2)
    members = tmp_path / "members.csv"
    members.write_text(
        "external_id,email,phone,email_consent,sms_consent,time_zone\n"
        f"day,day@example.com,+14155550101,true,true,{day}\n"
        f"night,night@example.com,+14155550102,true,true,{night}\n"
        f"no-consent,nc@example.com,+14155550103,false,false,{day}\n"
        f"listed,listed@example.com,+14155550104,true,true,{day}\n"
    )
    run("members", "import", str(members))
    with database.transaction() as session:
        now = datetime.now(UTC)
        session.add(
            Suppression(
                channel="email", address="listed@example.com", reason="bounce", created_at=now
            )
        )
        session.add(
            Suppression(channel="sms", address="+14155550104", reason="stop", created_at=now)
        )
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps({"type": "member.enrolled", "member": m, "id": f"signup-{m}"}) + "\n"
            for m in ("day", "night", "no-consent", "listed")
        )
    )

    supervisor = Supervisor(env, tmp_path, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        supervisor.start("scheduler", [*loyalty, "scheduler"])
        supervisor.start(
            "worker",
            [*loyalty, "worker", "--processes", "1", "--threads", "2",
             "--metrics-port", str(worker_port)],
        )  # fmt: skip
        supervisor.start("serve", [*loyalty, "serve", "--port", str(port)])
        wait_for(lambda: answers(f"{base}/healthz"), "loyalty serve", logs=tmp_path)
        worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
        wait_for(lambda: answers(worker_metrics), "the worker's metrics port", logs=tmp_path)

        # When they enrol and the journey's email and SMS steps run
        run("events", "ingest", str(events))

        def settled() -> bool:
            rows = message_rows(postgres_app)
            return sum(rows.values()) == 8 and {state for _, _, state in rows} <= SETTLED

        wait_for(settled, "eight messages sent, deferred or suppressed", logs=tmp_path)
        ready = httpx.get(f"{base}/readyz", timeout=10)
        scraped = httpx.get(f"{base}/metrics", timeout=30)
        from_worker = httpx.get(worker_metrics, timeout=30)
    finally:
        supervisor.stop_all()

    # Then the run did what it should
    rows = message_rows(postgres_app)
    assert rows == {
        ("promo", "email", "sent"): 2,
        ("promo", "email", "suppressed"): 2,
        ("promo", "sms", "sent"): 1,
        ("promo", "sms", "deferred"): 1,
        ("promo", "sms", "suppressed"): 2,
    }
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ready", "database": "ok", "redis": "ok"},
    )

    # ... and /metrics parses and holds the same figures
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert by_labels(samples(text, "loyalty_database_up")) == {(): 1.0}
    assert by_labels(samples(text, "loyalty_redis_up")) == {(): 1.0}
    messages = by_labels(samples(text, "loyalty_messages"), "journey", "channel", "state")
    assert messages == {key: float(count) for key, count in rows.items()}
    suppressed = by_labels(
        samples(text, "loyalty_messages_suppressed"), "journey", "channel", "reason"
    )
    assert suppressed == {
        ("promo", "email", "no_consent"): 1.0,
        ("promo", "sms", "no_consent"): 1.0,
        ("promo", "email", "bounce"): 1.0,
        ("promo", "sms", "stop"): 1.0,
    }
    # The deferred SMS waits for the morning: nothing is due now
    assert samples(text, "loyalty_outbox_due_messages") == []

    with database.sessions() as session:
        enrolled = session.scalar(select(func.count()).select_from(Enrollment))
        received = session.scalar(
            select(func.count()).where(Event.type == "member.enrolled").select_from(Event)
        )
        processed = session.scalar(
            select(func.count())
            .where(Event.type == "member.enrolled", Event.processed_at.is_not(None))
            .select_from(Event)
        )
    assert enrolled == 4 and received == processed == 4
    entered = by_labels(samples(text, "loyalty_enrollments_entered_total"), "journey")
    assert entered == {("promo",): 4.0}
    assert by_labels(samples(text, "loyalty_conversions_total"), "journey") == {("promo",): 0.0}
    events_in = by_labels(samples(text, "loyalty_events_received_total"), "type")
    events_done = by_labels(samples(text, "loyalty_events_processed_total"), "type")
    assert events_in[("member.enrolled",)] == received
    assert events_done[("member.enrolled",)] == processed
    assert samples(text, "loyalty_dead_letters_waiting") == []

    # ... and the worker's provider requests reach serve's /metrics through the shared folder:
    # one Twilio request per sent SMS, every SendGrid request accepted
    requests = by_labels(
        samples(text, "loyalty_provider_requests_total"), "provider", "outcome", "status"
    )
    assert requests[("twilio", "sent", "2xx")] == rows[("promo", "sms", "sent")]
    sendgrid_calls = len(sendgrid_sandbox.requests(path="/v3/mail/send"))
    assert requests[("sendgrid", "sent", "2xx")] == sendgrid_calls >= 1
    assert {k[0] for k in requests} == {"twilio", "sendgrid"}
    latency = by_labels(
        samples(text, "loyalty_provider_request_duration_seconds_count"), "provider"
    )
    assert latency == {("twilio",): 1.0, ("sendgrid",): float(sendgrid_calls)}
    # ... and the worker's own port serves Dramatiq's counts per actor with the same requests
    assert from_worker.status_code == 200
    worker_text = from_worker.text
    handled = by_labels(samples(worker_text, "dramatiq_messages_total"), "actor_name")
    assert handled[("process_event",)] >= 4 and handled[("deliver_message",)] >= 1
    assert (
        by_labels(
            samples(worker_text, "loyalty_provider_requests_total"), "provider", "outcome", "status"
        )
        == requests
    )
    # ... and the scheduler's ticks, with their intervals for the lag
    ticks = by_labels(samples(text, "loyalty_scheduler_tick_last_run_timestamp_seconds"), "tick")
    assert ticks[("outbox_relay",)] > 0
    intervals = by_labels(samples(text, "loyalty_scheduler_tick_interval_seconds"), "tick")
    assert intervals[("outbox_relay",)] == 1.0  # SCHEDULER_TICK_SECONDS
    assert intervals[("expire_points",)] == 3600.0  # the default
    queues = by_labels(samples(text, "loyalty_queue_messages"), "queue", "kind")
    assert ("events", "ready") in queues

    # ... and the logs are JSON lines, each worker line with the id of what it worked on
    logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
    assert "Traceback" not in logs
    assert "day@example.com" not in logs and "+14155550101" not in logs
    [worker_log] = tmp_path.glob("worker-*.log")
    lines = [
        json.loads(line) for line in worker_log.read_text().splitlines() if line.startswith("{")
    ]
    outcomes = [line for line in lines if line["event"] == "message.outcome"]
    assert outcomes and all(isinstance(line["message_id"], int) for line in outcomes)
    assert {line["level"] for line in lines} <= {"debug", "info", "warning", "error"}

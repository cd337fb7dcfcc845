"""`/metrics` and `/readyz` of one web app: figures read from the rows, and answers (never a
crash) when the database or Redis is gone."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update
from starlette.testclient import TestClient

from bench.outbox_rows import due_messages, promo_version
from cli import main
from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database
from loyalty.models import DeadLetter, Enrollment, Event, Message, SyncCursor
from tests.conftest import make_settings
from tests.factories import make_member
from web.app import create_app

#: Nothing listens on port 1 of the loopback.
DOWN_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:1/loyalty"
DOWN_REDIS = "redis://127.0.0.1:1/0"


def scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of /metrics, by name and then by its sorted labels."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_message_and_enrollment_figures_are_the_rows(
    app: App, clock: FrozenClock, tmp_path: Path
) -> None:
    # Given five pending emails and three pending SMS of the promo journey, made 90 s ago
    version = promo_version(app, tmp_path)
    emails = due_messages(app, version, 5, "email")
    texts = due_messages(app, version, 3, "sms", start=5)
    # ... of which two emails were sent, one suppressed, and one SMS waits for the morning
    with app.database.transaction() as session:
        session.execute(update(Message).where(Message.id.in_(emails[:2])).values(state="sent"))
        session.execute(
            update(Message)
            .where(Message.id == emails[2])
            .values(state="suppressed", error="no_consent", decisions={"decision": "no_consent"})
        )
        session.execute(
            update(Message)
            .where(Message.id == texts[0])
            .values(state="deferred", next_attempt_at=clock.now() + timedelta(hours=8))
        )
        converted = select(Message.enrollment_id).where(Message.id == emails[0])
        session.execute(
            update(Enrollment)
            .where(Enrollment.id == converted.scalar_subquery())
            .values(state="converted", converted_at=clock.now())
        )
        session.add(
            DeadLetter(
                message_id="m-1",
                queue="messages",
                actor="deliver_message",
                args={},
                failed_at=clock.now(),
            )
        )
    clock.advance(timedelta(seconds=90))

    # When /metrics is scraped
    with TestClient(create_app(app)) as client:
        found = scrape(client)

    # Then each figure is what the rows say
    promo = (("journey", "promo"),)
    assert found["loyalty_messages"] == {
        (("channel", "email"), ("journey", "promo"), ("state", "sent")): 2.0,
        (("channel", "email"), ("journey", "promo"), ("state", "suppressed")): 1.0,
        (("channel", "email"), ("journey", "promo"), ("state", "pending")): 2.0,
        (("channel", "sms"), ("journey", "promo"), ("state", "deferred")): 1.0,
        (("channel", "sms"), ("journey", "promo"), ("state", "pending")): 2.0,
    }
    assert found["loyalty_messages_suppressed"] == {
        (("channel", "email"), ("journey", "promo"), ("reason", "no_consent")): 1.0
    }
    assert found["loyalty_outbox_due_messages"] == {
        (("channel", "email"),): 2.0,
        (("channel", "sms"),): 2.0,
    }
    assert found["loyalty_outbox_oldest_due_age_seconds"] == {
        (("channel", "email"),): 90.0,
        (("channel", "sms"),): 90.0,
    }
    assert found["loyalty_enrollments_entered_total"] == {promo: 8.0}
    assert found["loyalty_conversions_total"] == {promo: 1.0}
    assert found["loyalty_enrollments"] == {
        (("journey", "promo"), ("state", "completed")): 7.0,
        (("journey", "promo"), ("state", "converted")): 1.0,
    }
    assert found["loyalty_dead_letters_waiting"] == {(("actor", "deliver_message"),): 1.0}
    assert found["loyalty_database_up"] == {(): 1.0}
    assert "loyalty_redis_up" not in found  # no Redis configured, none reported


def test_a_database_that_is_down_is_reported_not_raised(clock: FrozenClock, tmp_path: Path) -> None:
    database = Database(DOWN_POSTGRES)
    app = App(make_settings(database, redis_url=DOWN_REDIS), database, clock)
    with TestClient(create_app(app)) as client:
        found = scrape(client)
        ready = client.get("/readyz")
        alive = client.get("/healthz")
    assert found["loyalty_database_up"] == {(): 0.0}
    assert found["loyalty_redis_up"] == {(): 0.0}
    assert "loyalty_messages" not in found
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "not ready",
        "database": "unreachable (OperationalError)",
        "redis": "unreachable (ConnectionError)",
    }
    assert alive.status_code == 200


def test_readyz_answers_200_when_the_database_answers(app: App) -> None:
    with TestClient(create_app(app)) as client:
        response = client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready", "database": "ok"})


@pytest.mark.integration
def test_readyz_checks_redis_when_it_is_configured(app: App, redis_url: str) -> None:
    app.settings = make_settings(app.database, redis_url=redis_url)
    with TestClient(create_app(app)) as client:
        response = client.get("/readyz")
        found = scrape(client)
    assert response.json() == {"status": "ready", "database": "ok", "redis": "ok"}
    assert found["loyalty_redis_up"] == {(): 1.0}
    assert found["loyalty_queue_messages"][(("kind", "ready"), ("queue", "events"))] == 0.0


def test_a_worker_metrics_port_without_the_multiprocess_folder_is_refused_in_one_line(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    result = CliRunner().invoke(
        main,
        ["worker", "--metrics-port", "9191"],
        env={"DATABASE_URL": app.database.url, "REDIS_URL": DOWN_REDIS},
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --metrics-port needs PROMETHEUS_MULTIPROC_DIR set to an existing folder for "
        "this host's loyalty processes (empty it before they start)"
    ]


def test_crm_sync_status_and_events_are_the_rows(app: App, clock: FrozenClock) -> None:
    # Given a HubSpot push that landed, a Salesforce push refused twice, and parked events
    with app.database.transaction() as session:
        session.add(SyncCursor(crm="hubspot", direction="push", last_run_at=clock.now()))
        session.add(
            SyncCursor(
                crm="salesforce",
                direction="push",
                last_run_at=clock.now() - timedelta(minutes=5),
                last_error="INVALID_FIELD",
                refusals=2,
            )
        )
    member = make_member(app)
    with app.database.transaction() as session:
        for n, (processed, parked) in enumerate([(True, False), (False, True), (False, False)]):
            session.add(
                Event(
                    source="shop",
                    external_id=f"e-{n}",
                    type="order.completed",
                    member_id=member.id,
                    payload={},
                    occurred_at=clock.now(),
                    received_at=clock.now(),
                    processed_at=clock.now() if processed else None,
                    parked_at=clock.now() if parked else None,
                )
            )

    with TestClient(create_app(app)) as client:
        found = scrape(client)

    hubspot = (("crm", "hubspot"), ("direction", "push"))
    salesforce = (("crm", "salesforce"), ("direction", "push"))
    assert found["loyalty_crm_sync_last_run_timestamp_seconds"] == {
        hubspot: clock.now().timestamp(),
        salesforce: (clock.now() - timedelta(minutes=5)).timestamp(),
    }
    assert found["loyalty_crm_sync_failing"] == {hubspot: 0.0, salesforce: 1.0}
    assert found["loyalty_crm_sync_refusals"] == {hubspot: 0.0, salesforce: 2.0}
    orders = (("type", "order.completed"),)
    assert found["loyalty_events_received_total"] == {orders: 3.0}
    assert found["loyalty_events_processed_total"] == {orders: 1.0}
    assert found["loyalty_events_parked"] == {orders: 1.0}

"""Dead letters and database error texts carry no SQL parameters and no quoted row values."""

from __future__ import annotations

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError

from automations import runtime
from automations.intake import emit
from automations.runtime.broker import build_broker, embedded_worker
from automations.runtime.dead_letters import list_dead_letters
from loyalty.app import App
from loyalty.db import Database, error_text
from loyalty.event_types import EventInput
from loyalty.models import Member
from tests.conftest import make_settings
from tests.factories import make_member

SECRET = "zofia.secret@example.com"


def test_a_dead_letter_from_a_database_error_stores_no_parameters(app: App) -> None:
    make_member(app, external_id="m-1")
    app.settings = make_settings(app.database, max_retries=0, retry_min_backoff_ms=10)
    runtime.configure(app)
    broker = build_broker(app.settings)
    # The order id reaches the failing statement's parameters (the ledger's key).
    order = {"order_id": SECRET, "total": "40", "currency": "EUR"}
    with app.database.engine.begin() as connection:
        connection.execute(text("ALTER TABLE points_ledger RENAME TO points_ledger_away"))
    try:
        with embedded_worker(broker, threads=1):
            emit(app, EventInput("order.completed", "m-1", id="e-1", data=order))
    finally:
        with app.database.engine.begin() as connection:
            connection.execute(text("ALTER TABLE points_ledger_away RENAME TO points_ledger"))
    [dead] = list_dead_letters(app.database)
    assert dead.actor == "process_event"
    error = dead.error or ""
    assert "points_ledger" in error  # still says what failed
    assert SECRET not in error
    assert "parameters" not in error and "[SQL" not in error


def test_database_errors_quote_no_parameters_or_row_values(database: Database) -> None:
    now = text("CURRENT_TIMESTAMP")
    with pytest.raises(IntegrityError) as raised, database.transaction() as session:
        for code in ("R-1", "R-2"):  # the same external id twice
            session.execute(
                insert(Member).values(
                    external_id=SECRET,
                    tier="bronze",
                    referral_code=code,
                    enrolled_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
    # The engine hides the parameters from every error text (logs, tracebacks)…
    assert "[parameters:" not in str(raised.value)
    # …and what is stored keeps neither them nor the values PostgreSQL quotes back.
    stored = error_text(raised.value)
    assert stored.startswith("IntegrityError: (")
    assert "external_id" in stored or "uq_members_external_id" in stored
    assert SECRET not in stored and "\n" not in stored

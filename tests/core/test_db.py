"""The database helpers the exactly-once patterns rest on, on both backends."""

from __future__ import annotations

from loyalty.app import App
from loyalty.db import insert_ignore
from loyalty.models import Suppression


def test_insert_ignore_says_how_many_rows_were_new(app: App) -> None:
    row = {
        "channel": "sms",
        "address": "+14155550100",
        "reason": "stop",
        "created_at": app.clock.now(),
    }
    other = {**row, "address": "+14155550101"}
    with app.database.transaction() as session:
        assert insert_ignore(session, Suppression, [row], ["channel", "address"]) == 1
        assert insert_ignore(session, Suppression, [row], ["channel", "address"]) == 0
        assert insert_ignore(session, Suppression, [row, other], ["channel", "address"]) == 1

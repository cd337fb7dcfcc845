"""The database helpers the exactly-once patterns rest on, on both backends."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory

from loyalty.app import App
from loyalty.db import SCHEMA_HEAD, Database, alembic_config, downgrade, insert_ignore, upgrade
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


def test_the_schema_head_is_alembics(tmp_path: Path) -> None:
    config = alembic_config(f"sqlite:///{tmp_path / 'unused.db'}")
    assert set(ScriptDirectory.from_config(config).get_heads()) == {SCHEMA_HEAD}


def test_a_database_is_migrated_only_at_the_head(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'loyalty.db'}")
    assert not database.is_migrated()  # no schema at all
    upgrade(database)
    assert database.is_migrated()
    downgrade(database, "-1")
    assert not database.is_migrated()
    database.dispose()


def test_a_current_database_is_migrated_on_both_backends(app: App) -> None:
    assert app.database.is_migrated()

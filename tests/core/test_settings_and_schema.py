"""Settings refuse bad values in one line; migrations and models agree on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner

from cli import main
from loyalty.db import Database
from loyalty.models import Base
from loyalty.settings import load_settings


def test_a_bad_setting_stops_start_up_with_one_line_naming_it() -> None:
    result = CliRunner().invoke(
        main, ["members", "show", "x"], env={"DEFAULT_TIME_ZONE": "Mars/Olympus"}
    )
    assert result.exit_code == 2
    assert result.output == (
        "error: DEFAULT_TIME_ZONE: expected an IANA time zone such as Europe/Warsaw "
        "(got 'Mars/Olympus')\n"
    )


def test_settings_parse_lists_and_tiers() -> None:
    settings = load_settings(
        database_url="postgresql://u@db/loyalty",
        tier_thresholds="member:0, vip:2500",
        event_types="review.submitted,quiz.completed",
        default_phone_region="pl",
    )
    assert settings.database_url == "postgresql+psycopg://u@db/loyalty"
    assert settings.tier_thresholds == {"member": 0, "vip": 2500}
    assert settings.event_types == ["review.submitted", "quiz.completed"]
    assert settings.default_phone_region == "PL"


def test_secrets_are_not_echoed_in_errors() -> None:
    result = CliRunner().invoke(
        main, ["members", "show", "x"], env={"DATABASE_URL": "mysql://app:s3cr3t@db/loyalty"}
    )
    assert result.exit_code == 2
    assert result.output == (
        "error: DATABASE_URL: expected sqlite:///PATH or postgresql://USER@HOST/DB\n"
    )


def test_the_migrations_build_exactly_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []

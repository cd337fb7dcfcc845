"""Points per currency: each earns at its rate; one without a rate earns nothing, and says so."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from loyalty.app import App
from loyalty.errors import ConfigError
from loyalty.settings import load_settings
from tests.rewards.support import (
    balance,
    emit_all,
    events_of,
    member_with_points,
    order,
    rewards_app,
)


def test_a_plain_number_is_the_rate_of_every_currency() -> None:
    settings = load_settings(points_per_currency_unit="2")
    assert settings.points_rate("PLN") == settings.points_rate("jpy") == Decimal(2)


def test_rates_per_currency_with_a_default() -> None:
    settings = load_settings(points_per_currency_unit="PLN:1,EUR:4,USD:4,0.5")
    assert [settings.points_rate(c) for c in ("PLN", "eur", "USD", "GBP")] == [
        Decimal(1),
        Decimal(4),
        Decimal(4),
        Decimal("0.5"),
    ]
    assert load_settings(points_per_currency_unit="PLN:1").points_rate("EUR") is None


@pytest.mark.parametrize("value", ["lots", "PLN:-1", "PL:1", "PLN:1,PLN:2", ""])
def test_a_bad_rate_stops_start_up_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match=r"POINTS_PER_CURRENCY_UNIT: .*PLN:1,EUR:4"):
        load_settings(points_per_currency_unit=value)


def test_orders_earn_at_their_currencys_rate(app: App, tmp_path: Path) -> None:
    app = rewards_app(app, tmp_path, points_per_currency_unit="PLN:1,EUR:4")
    member = member_with_points(app, 0, external_id="m-1")
    emit_all(app, order("m-1", "1", "10.99", "PLN"), order("m-1", "2", "10.99", "EUR"))
    assert balance(app.database, member.id) == 10 + 43


def test_an_order_in_a_currency_without_a_rate_earns_nothing_and_says_why(
    app: App, tmp_path: Path
) -> None:
    app = rewards_app(app, tmp_path, points_per_currency_unit="PLN:1,EUR:4")
    member = member_with_points(app, 0, external_id="m-1")
    emit_all(app, order("m-1", "1", "100", "GBP"))
    assert balance(app.database, member.id) == 0
    (event,) = events_of(app.database, "order.completed")
    assert event.processed_at is not None
    assert event.error is not None
    assert "POINTS_PER_CURRENCY_UNIT has no rate for GBP and no default" in event.error

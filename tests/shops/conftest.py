"""A web app with both shops' webhook secrets set, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database
from tests.conftest import make_settings
from tests.shops.support import SHOP_DOMAIN, SHOPIFY_SECRET, WOOCOMMERCE_SECRET
from web.app import create_app


@pytest.fixture
def shop_app(database: Database, clock: FrozenClock, tmp_path: Path) -> App:
    settings = make_settings(
        database,
        outbox_dir=tmp_path / "outbox",
        export_dir=tmp_path / "exports",
        shopify_webhook_secret=SHOPIFY_SECRET,
        shopify_shop_domain=SHOP_DOMAIN,
        woocommerce_webhook_secret=WOOCOMMERCE_SECRET,
        points_per_currency_unit="1",
    )
    return App(settings, database, clock)


@pytest.fixture
def shop_client(shop_app: App) -> Iterator[TestClient]:
    with TestClient(create_app(shop_app)) as client:
        yield client

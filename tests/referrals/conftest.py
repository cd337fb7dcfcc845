"""The referral program on each backend, wired to the Shopify emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from loyalty.app import App
from sandbox.shopify import ShopifySandbox
from tests.referrals.support import Shop, program
from web.app import create_app


@pytest.fixture
def referral_app(app: App, tmp_path: Path, shopify_sandbox: ShopifySandbox) -> App:
    return program(app, tmp_path, shopify_sandbox)


@pytest.fixture
def shop(referral_app: App, shopify_sandbox: ShopifySandbox) -> Iterator[Shop]:
    with TestClient(create_app(referral_app)) as client:
        yield Shop(referral_app, client, shopify_sandbox)

"""A web app with every webhook secret configured, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from loyalty.app import App
from loyalty.clock import FrozenClock
from loyalty.db import Database
from tests.conftest import make_settings
from tests.web.support import (
    HUBSPOT_CLIENT_SECRET,
    PUBLIC_BASE_URL,
    TWILIO_AUTH_TOKEN,
    public_key_b64,
)
from web.app import create_app


@pytest.fixture(scope="session")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def web_app(
    database: Database, clock: FrozenClock, tmp_path: Path, sendgrid_key: ec.EllipticCurvePrivateKey
) -> App:
    settings = make_settings(
        database,
        outbox_dir=tmp_path / "outbox",
        public_base_url=PUBLIC_BASE_URL,
        sendgrid_webhook_public_key=public_key_b64(sendgrid_key),
        twilio_auth_token=TWILIO_AUTH_TOKEN,
        hubspot_client_secret=HUBSPOT_CLIENT_SECRET,
        program_name="Acme Rewards",
        support_contact="help@acme.example",
        sms_frequency="Up to 4 msgs/month",
    )
    return App(settings, database, clock)


@pytest.fixture
def client(web_app: App) -> Iterator[TestClient]:
    with TestClient(create_app(web_app)) as test_client:
        yield test_client

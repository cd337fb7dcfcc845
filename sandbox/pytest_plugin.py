"""Pytest fixtures: one emulator per provider for the session, fresh state for every test.

Load with `pytest_plugins = ["sandbox.pytest_plugin"]` in the root conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from sandbox.hubspot import HubSpotSandbox
from sandbox.recorder import RecordedRequest
from sandbox.salesforce import SalesforceSandbox
from sandbox.sendgrid import SendGridSandbox
from sandbox.shopify import ShopifySandbox
from sandbox.sink import WebhookSink
from sandbox.twilio import TwilioSandbox
from sandbox.woocommerce import WooCommerceSandbox

__all__ = [
    "ACCEPTED_REQUESTS",
    "_sandbox_hubspot",
    "_sandbox_salesforce",
    "_sandbox_sendgrid",
    "_sandbox_shopify",
    "_sandbox_sink",
    "_sandbox_twilio",
    "_sandbox_woocommerce",
    "hubspot_sandbox",
    "salesforce_sandbox",
    "sandbox_accepted",
    "sendgrid_sandbox",
    "shopify_sandbox",
    "twilio_sandbox",
    "webhook_sink",
    "woocommerce_sandbox",
]

#: SendGrid and Twilio requests the emulators accepted during this session (this process), by
#: provider, as `sandbox_accepted` keeps them unless a conftest.py overrides it.
ACCEPTED_REQUESTS: dict[str, list[RecordedRequest]] = {"sendgrid": [], "twilio": []}

#: Receives a provider's name and the requests its emulator accepted during one test.
AcceptedCheck = Callable[[str, list[RecordedRequest]], None]


def _accepted(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    return [
        r for r in requests if r.status is not None and 200 <= r.status < 300 and r.fault is None
    ]


@pytest.fixture(scope="session")
def sandbox_accepted() -> AcceptedCheck:
    """What is done, after each test, with the SendGrid and Twilio requests it got accepted.

    By default they are kept in ACCEPTED_REQUESTS; a conftest.py overrides this fixture to
    check them right away (against the providers' OpenAPI documents, say), which holds
    whichever pytest-xdist worker ran the test.
    """

    def keep(name: str, requests: list[RecordedRequest]) -> None:
        ACCEPTED_REQUESTS[name].extend(requests)

    return keep


@pytest.fixture(scope="session")
def _sandbox_hubspot() -> Iterator[HubSpotSandbox]:
    with HubSpotSandbox() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def _sandbox_salesforce() -> Iterator[SalesforceSandbox]:
    with SalesforceSandbox(query_page_size=200) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def _sandbox_sendgrid() -> Iterator[SendGridSandbox]:
    with SendGridSandbox(event_delay_s=0.01, duplicate_rate=0.0, seed=7) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def _sandbox_twilio() -> Iterator[TwilioSandbox]:
    with TwilioSandbox(segments_per_second=200.0, delivery_delay_s=0.01) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def _sandbox_shopify() -> Iterator[ShopifySandbox]:
    with ShopifySandbox() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def _sandbox_woocommerce() -> Iterator[WooCommerceSandbox]:
    with WooCommerceSandbox() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def _sandbox_sink() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


@pytest.fixture
def hubspot_sandbox(_sandbox_hubspot: HubSpotSandbox) -> Iterator[HubSpotSandbox]:
    """HubSpot CRM v3 on http://127.0.0.1:<port>, empty, with its real rate limits."""
    _sandbox_hubspot.reset()
    yield _sandbox_hubspot


@pytest.fixture
def salesforce_sandbox(_sandbox_salesforce: SalesforceSandbox) -> Iterator[SalesforceSandbox]:
    """Salesforce on https://127.0.0.1:<port> (trust `ca_file`), query pages of 200."""
    _sandbox_salesforce.reset()
    yield _sandbox_salesforce


@pytest.fixture
def sendgrid_sandbox(
    _sandbox_sendgrid: SendGridSandbox, sandbox_accepted: AcceptedCheck
) -> Iterator[SendGridSandbox]:
    """SendGrid mail send; set `webhook_url` to receive signed events (no duplicates)."""
    _sandbox_sendgrid.reset()
    yield _sandbox_sendgrid
    _sandbox_sendgrid.wait_idle(2.0)
    sandbox_accepted("sendgrid", _accepted(_sandbox_sendgrid.requests(path="/v3/mail/send")))


@pytest.fixture
def twilio_sandbox(
    _sandbox_twilio: TwilioSandbox, sandbox_accepted: AcceptedCheck
) -> Iterator[TwilioSandbox]:
    """Twilio Messages with fast pacing (200 segments/s per sender) and 10 ms delivery."""
    _sandbox_twilio.reset()
    yield _sandbox_twilio
    _sandbox_twilio.wait_idle(2.0)
    sandbox_accepted("twilio", _accepted(_sandbox_twilio.requests(method="POST")))


@pytest.fixture
def shopify_sandbox(_sandbox_shopify: ShopifySandbox) -> Iterator[ShopifySandbox]:
    """Shopify Admin GraphQL on https://127.0.0.1:<port> (trust `ca_file`), no codes yet."""
    _sandbox_shopify.reset()
    yield _sandbox_shopify


@pytest.fixture
def woocommerce_sandbox(_sandbox_woocommerce: WooCommerceSandbox) -> Iterator[WooCommerceSandbox]:
    """WooCommerce REST v3 on http://127.0.0.1:<port> (OAuth 1.0a), no coupons yet."""
    _sandbox_woocommerce.reset()
    yield _sandbox_woocommerce


@pytest.fixture
def webhook_sink(_sandbox_sink: WebhookSink) -> Iterator[WebhookSink]:
    """A receiver for webhooks and callbacks that records every post."""
    _sandbox_sink.reset()
    yield _sandbox_sink

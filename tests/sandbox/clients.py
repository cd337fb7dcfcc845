"""Official provider clients pointed at the emulators, built the way the project builds them."""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
import shopify
from hubspot import HubSpot
from sendgrid import SendGridAPIClient
from simple_salesforce.api import Salesforce, SFType
from simple_salesforce.bulk2 import SFBulk2Handler
from simple_salesforce.exceptions import SalesforceError
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient
from woocommerce import API as WooCommerceAPI

from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.sendgrid import SendGridSandbox
from sandbox.shopify import ShopifySandbox
from sandbox.twilio import TwilioSandbox
from sandbox.woocommerce import WooCommerceSandbox


def hubspot_client(sandbox: HubSpotSandbox, token: str | None = None) -> HubSpot:
    return HubSpot(access_token=token or sandbox.access_token, host=sandbox.base_url)


def salesforce_client(sandbox: SalesforceSandbox, token: str | None = None) -> Salesforce:
    session = requests.Session()
    session.verify = str(sandbox.ca_file)
    # REQUESTS_CA_BUNDLE would otherwise override session.verify.
    session.trust_env = False
    return Salesforce(
        instance_url=sandbox.base_url,
        session_id=token or sandbox.access_token,
        version="59.0",
        session=session,
    )


def salesforce_contacts(sf: Salesforce) -> SFType:
    """`sf.Contact`, which simple-salesforce types as bulk handler | Bulk 2.0 handler | SFType."""
    contacts = sf.Contact
    assert isinstance(contacts, SFType)
    return contacts


def salesforce_bulk2_contacts(sf: Salesforce) -> Any:
    """`sf.bulk2.Contact`, left untyped as the product adapter leaves it: simple-salesforce
    annotates `upsert(wait=)` as int (it is a float poll interval) and its results as
    dict[str, int] (`job_id` is a str)."""
    bulk2 = sf.bulk2
    assert isinstance(bulk2, SFBulk2Handler)
    return bulk2.Contact


def salesforce_errors(exc: SalesforceError) -> list[dict[str, Any]]:
    """The error's parsed JSON body, a list of errors: simple-salesforce annotates `content`
    as bytes, but it holds `response.json()` (the text when the body is not JSON)."""
    body: object = exc.content
    assert isinstance(body, list), body
    return body


def sendgrid_client(sandbox: SendGridSandbox, api_key: str | None = None) -> SendGridAPIClient:
    return SendGridAPIClient(api_key or sandbox.api_key, host=sandbox.base_url)


def twilio_client(
    sandbox: TwilioSandbox, token: str | None = None, timeout: float | None = None
) -> TwilioClient:
    client = TwilioClient(
        sandbox.account_sid,
        token or sandbox.auth_token,
        http_client=TwilioHttpClient(timeout=timeout),
    )
    client.api.base_url = sandbox.base_url
    return client


@contextmanager
def shopify_session(sandbox: ShopifySandbox, token: str | None = None) -> Iterator[None]:
    """An active ShopifyAPI session on the emulator, undone on exit.

    ShopifyAPI rewrites a shop domain to `<first label>.<Session.myshopify_domain>` with
    `Session.port`, so `127.0.0.1:<port>` needs myshopify_domain "0.0.1" and the port; its
    GraphQL calls go through urllib's global opener, which is given a context that trusts
    the system CAs and the sandbox CA.
    """
    host, port = sandbox.shop_domain.rsplit(":", 1)
    saved = (shopify.Session.myshopify_domain, shopify.Session.port)
    shopify.Session.setup(myshopify_domain=host.split(".", 1)[1], port=int(port))
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(sandbox.ca_file))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    urllib.request.install_opener(opener)
    session = shopify.Session(
        sandbox.shop_domain, sandbox.api_version, token or sandbox.access_token
    )
    shopify.ShopifyResource.activate_session(session)
    try:
        yield
    finally:
        shopify.ShopifyResource.clear_session()
        urllib.request.install_opener(None)
        shopify.Session.setup(myshopify_domain=saved[0], port=saved[1])


def woocommerce_client(
    sandbox: WooCommerceSandbox, key: str | None = None, secret: str | None = None
) -> Any:
    """`API(url, key, secret, version="wc/v3")`: OAuth 1.0a over the emulator's plain HTTP,
    Basic auth (trusting its CA) when it serves HTTPS. Untyped: the package has no hints."""
    return WooCommerceAPI(
        sandbox.url,
        key or sandbox.consumer_key,
        secret or sandbox.consumer_secret,
        version="wc/v3",
        timeout=5,
        verify_ssl=str(sandbox.ca_file) if sandbox.ca_file else True,
    )

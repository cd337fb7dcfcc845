"""Official provider clients pointed at the emulators, built the way the project builds them."""

from __future__ import annotations

import requests
from hubspot import HubSpot
from sendgrid import SendGridAPIClient
from simple_salesforce import Salesforce
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.sendgrid import SendGridSandbox
from sandbox.twilio import TwilioSandbox


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

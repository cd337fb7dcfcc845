"""Fault injection and the admin API, observed through the official clients."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import requests
from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInputUpsert
from hubspot.crm.contacts.exceptions import ServiceException
from python_http_client.exceptions import InternalServerError, ServiceUnavailableError
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceRefusedRequest
from twilio.base.exceptions import TwilioRestException
from urllib3.exceptions import ReadTimeoutError

from sandbox.faults import FaultConfig, FaultInjector
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.sendgrid import SendGridSandbox
from sandbox.twilio import TwilioSandbox
from tests.sandbox.clients import (
    hubspot_client,
    salesforce_client,
    salesforce_errors,
    sendgrid_client,
    twilio_client,
)

MAIL = {
    "personalizations": [{"to": [{"email": "ann@example.com"}]}],
    "from": {"email": "club@example.com"},
    "subject": "Points",
    "content": [{"type": "text/plain", "value": "120 points"}],
}
UPSERT = BatchInputSimplePublicObjectBatchInputUpsert(
    inputs=[{"id": "ann@example.com", "idProperty": "email", "properties": {"firstname": "Ann"}}]
)


def test_hubspot_dropped_response_times_out_but_the_write_happened(
    hubspot_sandbox: HubSpotSandbox,
) -> None:
    hubspot_sandbox.set_faults(drop_rate=1.0)
    client = hubspot_client(hubspot_sandbox)

    with pytest.raises(ReadTimeoutError):
        client.crm.contacts.batch_api.upsert(UPSERT, _request_timeout=0.3)

    assert hubspot_sandbox.contact_by("email", "ann@example.com") is not None
    (recorded,) = hubspot_sandbox.requests()
    assert (recorded.fault, recorded.status) == ("dropped", 200)


def test_sendgrid_dropped_response_times_out(sendgrid_sandbox: SendGridSandbox) -> None:
    sendgrid_sandbox.set_faults(drop_rate=1.0)
    client = sendgrid_client(sendgrid_sandbox)

    with pytest.raises(TimeoutError):
        client.client.mail.send.post(request_body=MAIL, timeout=0.3)

    assert len(sendgrid_sandbox.sent) == 1
    assert sendgrid_sandbox.requests()[0].fault == "dropped"


def test_twilio_dropped_response_times_out(twilio_sandbox: TwilioSandbox) -> None:
    twilio_sandbox.set_faults(drop_rate=1.0)
    client = twilio_client(twilio_sandbox, timeout=0.3)

    with pytest.raises(requests.exceptions.ReadTimeout):
        client.messages.create(to="+48500100200", from_="+15005550006", body="hi")

    assert len(twilio_sandbox.messages) == 1


def test_salesforce_dropped_response_times_out(salesforce_sandbox: SalesforceSandbox) -> None:
    salesforce_sandbox.set_faults(drop_rate=1.0)
    sf = salesforce_client(salesforce_sandbox)

    with pytest.raises(requests.exceptions.ReadTimeout):
        sf.restful(
            "sobjects/Contact/Loyalty_Member_Id__c/m-1",
            method="PATCH",
            json={"LastName": "Nowak"},
            timeout=0.3,
        )

    assert [c["Loyalty_Member_Id__c"] for c in salesforce_sandbox.contacts()] == ["m-1"]


def test_injected_errors_reach_each_client_in_the_provider_shape(
    hubspot_sandbox: HubSpotSandbox,
    sendgrid_sandbox: SendGridSandbox,
    twilio_sandbox: TwilioSandbox,
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    for sandbox in (hubspot_sandbox, sendgrid_sandbox, twilio_sandbox, salesforce_sandbox):
        sandbox.set_faults(error_rate=1.0, error_statuses=(503,))

    with pytest.raises(ServiceException) as hubspot:
        hubspot_client(hubspot_sandbox).crm.contacts.batch_api.upsert(UPSERT)
    with pytest.raises(ServiceUnavailableError) as sendgrid:
        sendgrid_client(sendgrid_sandbox).client.mail.send.post(request_body=MAIL)
    with pytest.raises(TwilioRestException) as twilio:
        twilio_client(twilio_sandbox).messages.create(
            to="+48500100200", from_="+15005550006", body="hi"
        )
    with pytest.raises(SalesforceGeneralError) as salesforce:
        salesforce_client(salesforce_sandbox).query("SELECT Id FROM Contact")

    assert json.loads(hubspot.value.body)["status"] == "error"
    assert json.loads(sendgrid.value.body)["errors"][0]["message"]
    assert (twilio.value.status, twilio.value.code) == (503, 20503)
    assert salesforce.value.status == 503
    assert salesforce_errors(salesforce.value)[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert hubspot_sandbox.contacts() == [] and sendgrid_sandbox.sent == []
    assert twilio_sandbox.messages == {} and salesforce_sandbox.contacts() == []


def test_share_of_errors_follows_the_setting(sendgrid_sandbox: SendGridSandbox) -> None:
    sendgrid_sandbox.set_faults(error_rate=0.5, error_statuses=(500,), seed=3)
    client = sendgrid_client(sendgrid_sandbox)
    failures = 0

    for _ in range(100):
        try:
            client.client.mail.send.post(request_body=MAIL)
        except InternalServerError:
            failures += 1

    assert 30 <= failures <= 70
    assert len(sendgrid_sandbox.requests(status=500)) == failures


def test_salesforce_injected_rate_limit_is_request_limit_exceeded(
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    salesforce_sandbox.set_faults(rate_limit=1, rate_window_s=60)
    sf = salesforce_client(salesforce_sandbox)
    sf.query("SELECT Id FROM Contact")

    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM Contact")

    assert salesforce_errors(caught.value)[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_latency_is_added(hubspot_sandbox: HubSpotSandbox) -> None:
    hubspot_sandbox.set_faults(latency_ms=150)
    client = hubspot_client(hubspot_sandbox)

    started = time.monotonic()
    client.crm.contacts.batch_api.upsert(UPSERT)

    assert time.monotonic() - started >= 0.15


def test_admin_endpoint_changes_faults_and_reads_the_recorder(
    twilio_sandbox: TwilioSandbox,
) -> None:
    admin = httpx.Client(base_url=twilio_sandbox.base_url)
    client = twilio_client(twilio_sandbox)
    client.messages.create(to="+48500100200", from_="+15005550006", body="one")

    changed = admin.patch("/__sandbox/faults", json={"error_rate": 1.0, "error_statuses": [500]})
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to="+48500100200", from_="+15005550006", body="two")
    recorded = admin.get("/__sandbox/requests", params={"method": "POST"}).json()
    rejected = admin.patch("/__sandbox/faults", json={"error_rate": 2})
    unknown = admin.patch("/__sandbox/faults", json={"nonsense": 1})
    reset = admin.post("/__sandbox/reset")

    assert changed.json()["error_rate"] == 1.0
    assert caught.value.status == 500
    assert [r["status"] for r in recorded] == [201, 500]
    assert recorded[1]["fault"] == "error_500"
    assert "Body=two" in recorded[1]["body"]
    assert (rejected.status_code, unknown.status_code, reset.status_code) == (400, 400, 204)
    assert admin.get("/__sandbox/requests").json() == []
    assert admin.get("/__sandbox/faults").json()["error_rate"] == 0.0
    assert twilio_sandbox.messages == {}


def test_admin_inbound_and_sendgrid_key_endpoints(
    twilio_sandbox: TwilioSandbox, sendgrid_sandbox: SendGridSandbox
) -> None:
    inbound = httpx.post(
        f"{twilio_sandbox.base_url}/__sandbox/inbound",
        json={"from": "+48500100200", "to": "+15005550006", "body": "STOP"},
    )
    key = httpx.get(f"{sendgrid_sandbox.base_url}/__sandbox/webhook").json()

    assert inbound.status_code == 201
    assert twilio_sandbox.is_opted_out("+15005550006", "+48500100200")
    assert key["public_key"] == sendgrid_sandbox.public_key


def test_fault_config_rejects_bad_values_and_replays_with_a_seed() -> None:
    with pytest.raises(ValueError):
        FaultConfig(drop_rate=1.5)
    config = FaultConfig(error_rate=0.3, drop_rate=0.3, seed=11)

    injector_a, injector_b = FaultInjector(config), FaultInjector(config)
    draws_a = [injector_a.decide() for _ in range(50)]
    draws_b = [injector_b.decide() for _ in range(50)]

    assert draws_a == draws_b
    assert any(d.drop for d in draws_a) and any(d.error_status for d in draws_a)

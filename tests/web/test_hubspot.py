"""HubSpot webhooks: v3 signatures over method, public URL, body and a fresh timestamp."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from loyalty.app import App
from tests.web.support import hubspot_headers, provider_events, snapshot

PATH = "/webhooks/hubspot"


def change(event_id: int, **fields: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 234567,
        "portalId": 12345678,
        "appId": 987654,
        "occurredAt": 1773144000000,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": 65059681032,
        "propertyName": "email",
        "propertyValue": "ada@example.com",
        "changeSource": "CRM_UI",
        **fields,
    }


def post(client: TestClient, web_app: App, events: Any) -> Any:
    body = json.dumps(events).encode()
    return client.post(PATH, content=body, headers=hubspot_headers(body, web_app.clock.now()))


def test_signed_events_are_stored_once_each(client: TestClient, web_app: App) -> None:
    events = [change(1), change(2, subscriptionType="contact.creation")]
    assert post(client, web_app, events).status_code == 204
    # A retry repeats the events with a higher attemptNumber.
    retry = [{**e, "attemptNumber": 1} for e in events]
    assert post(client, web_app, retry).status_code == 204
    stored = provider_events(web_app, "hubspot")
    assert [e.kind for e in stored] == ["contact.propertyChange", "contact.creation"]
    assert [e.payload["eventId"] for e in stored] == [1, 2]
    assert all(e.applied_at is None for e in stored)


def test_the_same_event_id_on_another_object_is_another_event(
    client: TestClient, web_app: App
) -> None:
    post(client, web_app, [change(7), change(7, objectId=1)])
    assert len(provider_events(web_app, "hubspot")) == 2


@pytest.mark.parametrize(
    "case",
    [
        "tampered body",
        "other secret",
        "no signature",
        "no timestamp",
        "stale",
        "from the future",
        "timestamp swapped",
        "other url",
    ],
)
def test_bad_signatures_are_refused_and_change_nothing(
    client: TestClient, web_app: App, case: str
) -> None:
    now = web_app.clock.now()
    body = json.dumps([change(1)]).encode()
    headers = hubspot_headers(body, now)
    content = body
    if case == "tampered body":
        content = body.replace(b"CRM_UI", b"IMPORT")
    elif case == "other secret":
        headers = hubspot_headers(body, now, secret="another-secret")
    elif case == "no signature":
        del headers["X-HubSpot-Signature-v3"]
    elif case == "no timestamp":
        del headers["X-HubSpot-Request-Timestamp"]
    elif case == "stale":
        headers = hubspot_headers(body, now - timedelta(minutes=5, seconds=1))
    elif case == "from the future":
        headers = hubspot_headers(body, now + timedelta(minutes=6))
    elif case == "timestamp swapped":
        headers["X-HubSpot-Request-Timestamp"] = str(int(now.timestamp() * 1000) - 1)
    else:
        headers = hubspot_headers(body, now, path="/webhooks/other")
    before = snapshot(web_app)
    response = client.post(PATH, content=content, headers=headers)
    assert response.status_code == 403
    assert snapshot(web_app) == before


def test_a_signature_just_inside_the_window_is_accepted(client: TestClient, web_app: App) -> None:
    body = json.dumps([change(1)]).encode()
    headers = hubspot_headers(body, web_app.clock.now() - timedelta(minutes=4, seconds=59))
    assert client.post(PATH, content=body, headers=headers).status_code == 204


def test_without_a_client_secret_everything_is_refused(web_app: App) -> None:
    from web.app import create_app

    settings = web_app.settings.model_copy(update={"hubspot_client_secret": None})
    with TestClient(create_app(App(settings, web_app.database, web_app.clock))) as client:
        assert post(client, web_app, [change(1)]).status_code == 403
    assert provider_events(web_app, "hubspot") == []


@pytest.mark.parametrize("body", [b"{", b'{"eventId": 1}', b'["x"]', b"[Infinity]"])
def test_malformed_bodies_get_400_and_change_nothing(
    client: TestClient, web_app: App, body: bytes
) -> None:
    before = snapshot(web_app)
    response = client.post(PATH, content=body, headers=hubspot_headers(body, web_app.clock.now()))
    assert response.status_code == 400
    assert snapshot(web_app) == before

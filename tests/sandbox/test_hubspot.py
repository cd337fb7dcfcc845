"""HubSpot emulator, driven through hubspot-api-client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicGdprDeleteInput,
    PublicObjectSearchRequest,
)
from hubspot.crm.contacts.exceptions import NotFoundException, UnauthorizedException
from hubspot.crm.properties import ApiException as PropertiesApiException
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate

from sandbox.hubspot import HubSpotSandbox
from tests.sandbox.clients import hubspot_client


def create_inputs(*props: dict[str, str]) -> BatchInputSimplePublicObjectBatchInputForCreate:
    return BatchInputSimplePublicObjectBatchInputForCreate(
        inputs=[{"properties": p, "associations": []} for p in props]
    )


def upsert_inputs(
    *items: tuple[str, str, dict[str, str]],
) -> BatchInputSimplePublicObjectBatchInputUpsert:
    return BatchInputSimplePublicObjectBatchInputUpsert(
        inputs=[{"id": i, "idProperty": p, "properties": props} for i, p, props in items]
    )


def search(client: Any, **body: Any) -> Any:
    return client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(**body))


def error_body(exc: ApiException) -> dict[str, Any]:
    return dict(json.loads(exc.body))


def test_batch_create_returns_201_with_created_contacts(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)

    result = client.crm.contacts.batch_api.create(
        create_inputs(
            {"email": "ann@example.com", "firstname": "Ann"}, {"email": "bob@example.com"}
        )
    )

    assert result.status == "COMPLETE"
    assert [r.properties["email"] for r in result.results] == ["ann@example.com", "bob@example.com"]
    assert all(r.properties["lastmodifieddate"] for r in result.results)
    (recorded,) = hubspot_sandbox.requests(path="/crm/v3/objects/contacts/batch/create")
    assert recorded.status == 201
    assert recorded.headers["authorization"] == f"Bearer {hubspot_sandbox.access_token}"
    assert len(recorded.json()["inputs"]) == 2


def test_batch_create_with_one_invalid_email_is_a_207(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)

    result = client.crm.contacts.batch_api.create(
        create_inputs({"email": "ann@example.com"}, {"email": "not-an-email"})
    )

    assert type(result).__name__ == "BatchResponseSimplePublicObjectWithErrors"
    assert result.num_errors == 1
    assert result.errors[0].category == "VALIDATION_ERROR"
    assert result.errors[0].errors[0].code == "INVALID_EMAIL"
    assert len(result.results) == 1
    assert hubspot_sandbox.requests()[-1].status == 207
    assert len(hubspot_sandbox.contacts()) == 1


def test_upsert_by_email_creates_then_updates(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)
    batch = client.crm.contacts.batch_api

    first = batch.upsert(upsert_inputs(("ann@example.com", "email", {"firstname": "Ann"})))
    second = batch.upsert(upsert_inputs(("ANN@example.com", "email", {"firstname": "Anna"})))

    assert first.results[0].new is True
    assert second.results[0].new is False
    assert second.results[0].id == first.results[0].id
    stored = hubspot_sandbox.contact_by("email", "ann@example.com")
    assert stored is not None
    assert stored["properties"]["firstname"] == "Anna"
    assert (
        stored["properties"]["lastmodifieddate"] >= first.results[0].properties["lastmodifieddate"]
    )


def test_upsert_with_unknown_property_fails_the_whole_batch(
    hubspot_sandbox: HubSpotSandbox,
) -> None:
    client = hubspot_client(hubspot_sandbox)

    with pytest.raises(ApiException) as caught:
        client.crm.contacts.batch_api.upsert(
            upsert_inputs(("ann@example.com", "email", {"loyalty_points": "10"}))
        )

    assert caught.value.status == 400
    assert error_body(caught.value)["category"] == "VALIDATION_ERROR"
    assert 'Property "loyalty_points" does not exist' in error_body(caught.value)["message"]
    assert hubspot_sandbox.contacts() == []


def test_batch_update_read_and_archive(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)
    batch = client.crm.contacts.batch_api
    created = batch.create(
        create_inputs({"email": "ann@example.com"}, {"email": "bob@example.com"})
    )
    ann_id, bob_id = (r.id for r in created.results)

    updated = batch.update(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[
                {"id": ann_id, "properties": {"firstname": "Ann"}},
                {"id": "999999", "properties": {"firstname": "Ghost"}},
            ]
        )
    )
    read = batch.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[{"id": "ann@example.com"}, {"id": "nobody@example.com"}],
            properties=["firstname", "email"],
            id_property="email",
            properties_with_history=[],
        )
    )
    batch.archive(BatchInputSimplePublicObjectId(inputs=[{"id": bob_id}]))

    assert updated.num_errors == 1
    assert updated.errors[0].category == "OBJECT_NOT_FOUND"
    assert updated.errors[0].context == {"ids": ["999999"]}
    assert read.results[0].properties == {"firstname": "Ann", "email": "ann@example.com"}
    assert read.errors[0].context == {"ids": ["nobody@example.com"]}
    assert hubspot_sandbox.requests(path="/crm/v3/objects/contacts/batch/archive")[0].status == 204
    with pytest.raises(NotFoundException):
        client.crm.contacts.basic_api.get_by_id(bob_id)


def test_batch_of_more_than_100_inputs_is_rejected(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)
    inputs = [{"email": f"m{i}@example.com"} for i in range(101)]

    with pytest.raises(ApiException) as caught:
        client.crm.contacts.batch_api.create(create_inputs(*inputs))

    assert caught.value.status == 400


def test_get_by_id_and_by_unique_property(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)
    created = client.crm.contacts.batch_api.create(
        create_inputs({"email": "ann@example.com", "firstname": "Ann"})
    )
    basic = client.crm.contacts.basic_api

    by_id = basic.get_by_id(created.results[0].id, properties=["firstname"])
    by_email = basic.get_by_id("ann@example.com", id_property="email")

    assert by_id.properties == {"firstname": "Ann"}
    assert by_email.id == created.results[0].id
    assert set(by_email.properties) >= {"email", "createdate", "lastmodifieddate", "hs_object_id"}


def seed_contacts(sandbox: HubSpotSandbox, count: int) -> None:
    """Contacts m00000, m00001, ... with firstname F0 to F6; every third has no phone."""
    with sandbox.lock:
        for i in range(count):
            props = {"email": f"m{i:05d}@example.com", "firstname": f"F{i % 7}"}
            if i % 3:
                props["phone"] = str(i)
            sandbox.store.create(props)


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"propertyName": "email", "operator": "EQ", "value": "M00004@example.com"}, 1),
        ({"propertyName": "firstname", "operator": "NEQ", "value": "F0"}, 25),
        ({"propertyName": "hs_object_id", "operator": "GT", "value": "120"}, 10),
        ({"propertyName": "hs_object_id", "operator": "GTE", "value": "120"}, 11),
        ({"propertyName": "hs_object_id", "operator": "LT", "value": "105"}, 4),
        ({"propertyName": "hs_object_id", "operator": "LTE", "value": "105"}, 5),
        ({"propertyName": "firstname", "operator": "IN", "values": ["F1", "F2"]}, 9),
        ({"propertyName": "phone", "operator": "HAS_PROPERTY"}, 20),
        ({"propertyName": "phone", "operator": "NOT_HAS_PROPERTY"}, 10),
    ],
)
def test_search_filters(
    hubspot_sandbox: HubSpotSandbox, flt: dict[str, Any], expected: int
) -> None:
    seed_contacts(hubspot_sandbox, 30)
    client = hubspot_client(hubspot_sandbox)

    page = search(client, filter_groups=[{"filters": [flt]}], limit=100)

    assert page.total == expected
    assert len(page.results) == expected


def test_search_sorts_and_pages_with_after(hubspot_sandbox: HubSpotSandbox) -> None:
    seed_contacts(hubspot_sandbox, 25)
    client = hubspot_client(hubspot_sandbox)
    hubspot_sandbox.search_per_second = None
    hubspot_sandbox.apply_limits()

    seen: list[str] = []
    after: str | None = None
    while True:
        page = search(client, sorts=["-email"], properties=["email"], limit=10, after=after)
        seen += [r.properties["email"] for r in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after

    assert seen == sorted((f"m{i:05d}@example.com" for i in range(25)), reverse=True)
    assert [r.json().get("after") for r in hubspot_sandbox.requests()] == [None, "10", "20"]


def test_search_never_pages_past_10000(hubspot_sandbox: HubSpotSandbox) -> None:
    seed_contacts(hubspot_sandbox, 10_050)
    client = hubspot_client(hubspot_sandbox)

    last = search(client, limit=200, after="9800")
    with pytest.raises(ApiException) as caught:
        search(client, limit=200, after=last.paging.next.after)

    assert last.total == 10_050
    assert last.paging.next.after == "10000"
    assert caught.value.status == 400


def test_search_is_limited_per_second(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)

    for _ in range(5):
        search(client, limit=1)
    with pytest.raises(ApiException) as caught:
        search(client, limit=1)

    assert caught.value.status == 429
    assert error_body(caught.value)["policyName"] == "SECONDLY"


def test_properties_groups_unique_values_and_conflicts(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)
    props = client.crm.properties
    group = props.groups_api.create(
        "contacts", PropertyGroupCreate(name="loyalty", label="Loyalty", display_order=1)
    )
    member_id = PropertyCreate(
        name="loyalty_member_id",
        label="Loyalty member id",
        type="string",
        field_type="text",
        group_name="loyalty",
        has_unique_value=True,
    )
    created = props.core_api.create("contacts", member_id)
    tier = PropertyCreate(
        name="loyalty_tier",
        label="Tier",
        type="enumeration",
        field_type="select",
        group_name="loyalty",
        options=[{"label": "Gold", "value": "gold", "hidden": False, "displayOrder": 0}],
    )
    props.core_api.create("contacts", tier)

    with pytest.raises(PropertiesApiException) as duplicate:
        props.core_api.create("contacts", member_id)
    with pytest.raises(PropertiesApiException) as duplicate_group:
        props.groups_api.create("contacts", PropertyGroupCreate(name="loyalty", label="Again"))
    upserted = client.crm.contacts.batch_api.upsert(
        upsert_inputs(
            ("m-1", "loyalty_member_id", {"loyalty_tier": "gold"}),
            ("m-2", "loyalty_member_id", {"loyalty_tier": "platinum"}),
        )
    )
    with pytest.raises(ApiException) as not_unique:
        client.crm.contacts.batch_api.upsert(upsert_inputs(("Ann", "firstname", {})))

    assert group.name == "loyalty"
    assert created.has_unique_value is True
    assert duplicate.value.status == 409
    assert duplicate_group.value.status == 409
    assert upserted.results[0].new is True
    assert upserted.errors[0].errors[0].code == "INVALID_OPTION"
    assert not_unique.value.status == 400
    assert [p.name for p in props.core_api.get_all("contacts").results][-2:] == [
        "loyalty_member_id",
        "loyalty_tier",
    ]


def test_has_unique_value_cannot_change(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)

    with pytest.raises(PropertiesApiException) as caught:
        client.crm.properties.core_api.update(
            "contacts", "email", {"hasUniqueValue": False, "label": "Email"}
        )

    assert caught.value.status == 400


def test_gdpr_delete_removes_the_contact(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)
    client.crm.contacts.batch_api.create(create_inputs({"email": "ann@example.com"}))

    client.crm.contacts.basic_api.purge(
        PublicGdprDeleteInput(object_id="ann@example.com", id_property="email")
    )

    assert hubspot_sandbox.contacts() == []
    assert hubspot_sandbox.requests()[-1].json() == {
        "objectId": "ann@example.com",
        "idProperty": "email",
    }


def test_missing_or_wrong_token_is_401(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox, token="pat-wrong")

    with pytest.raises(UnauthorizedException) as caught:
        client.crm.contacts.basic_api.get_by_id("1")

    assert error_body(caught.value)["category"] == "INVALID_AUTHENTICATION"


def test_ten_secondly_limit_headers_and_exact_429(hubspot_sandbox: HubSpotSandbox) -> None:
    hubspot_sandbox.ten_secondly_limit = 3
    hubspot_sandbox.apply_limits()
    client = hubspot_client(hubspot_sandbox)
    basic = client.crm.contacts.basic_api
    created = client.crm.contacts.batch_api.create(create_inputs({"email": "ann@example.com"}))

    _, _, headers = basic.get_by_id_with_http_info(created.results[0].id)
    basic.get_by_id(created.results[0].id)
    with pytest.raises(ApiException) as caught:
        basic.get_by_id(created.results[0].id)

    assert headers["X-HubSpot-RateLimit-Max"] == "3"
    assert headers["X-HubSpot-RateLimit-Remaining"] == "1"
    assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert caught.value.status == 429
    assert caught.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    body = error_body(caught.value)
    assert body.pop("correlationId")
    assert body == {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "TEN_SECONDLY_ROLLING",
    }


def test_batch_read_with_history_is_limited_to_50(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)
    inputs = [{"id": str(i)} for i in range(51)]

    with pytest.raises(ApiException) as caught:
        client.crm.contacts.batch_api.read(
            BatchReadInputSimplePublicObjectId(
                inputs=inputs, properties=["email"], properties_with_history=["email"]
            )
        )

    assert caught.value.status == 400


def test_typed_properties_reject_bad_values_per_input(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)
    props = client.crm.properties.core_api
    for name, type_, field_type in (
        ("points", "number", "number"),
        ("joined", "datetime", "date"),
        ("vip", "bool", "booleancheckbox"),
    ):
        props.create(
            "contacts",
            PropertyCreate(
                name=name,
                label=name,
                type=type_,
                field_type=field_type,
                group_name="contactinformation",
            ),
        )

    result = client.crm.contacts.batch_api.create(
        create_inputs(
            {"email": "ok@example.com", "points": "12", "joined": "2024-01-01T00:00:00Z"},
            {"email": "a@example.com", "points": "twelve"},
            {"email": "b@example.com", "joined": "yesterday"},
            {"email": "c@example.com", "vip": "maybe"},
        )
    )

    codes = [e.errors[0].code for e in result.errors]
    assert codes == ["INVALID_INTEGER", "INVALID_DATE", "INVALID_BOOLEAN"]
    assert [r.properties["email"] for r in result.results] == ["ok@example.com"]

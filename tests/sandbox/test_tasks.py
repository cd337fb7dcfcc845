"""HubSpot tasks and Salesforce Task in the emulators, driven through the official clients."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hubspot.crm.objects.tasks import (
    AssociationSpec,
    Filter,
    FilterGroup,
    PublicAssociationsForObject,
    PublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.objects.tasks.exceptions import ApiException
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from tests.sandbox.clients import hubspot_client, salesforce_client


def task_input(contact_id: str, **properties: str) -> SimplePublicObjectInputForCreate:
    association = PublicAssociationsForObject(
        to=PublicObjectId(id=contact_id),
        types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=204)],
    )
    return SimplePublicObjectInputForCreate(properties=properties, associations=[association])


def hubspot_contact(sandbox: HubSpotSandbox) -> str:
    with sandbox.lock:
        return sandbox.store.create({"email": "ann@example.com"}).id


def test_hubspot_opens_a_task_on_a_contact_and_finds_it(hubspot_sandbox: HubSpotSandbox) -> None:
    client = hubspot_client(hubspot_sandbox)
    contact = hubspot_contact(hubspot_sandbox)

    created = client.crm.objects.tasks.basic_api.create(
        task_input(contact, hs_timestamp="2026-04-03T09:00:00Z", hs_task_subject="Call Ann")
    )
    request = PublicObjectSearchRequest(
        filter_groups=[
            FilterGroup(
                filters=[Filter(property_name="associations.contact", operator="EQ", value=contact)]
            )
        ],
        properties=["hs_task_subject"],
    )
    found = client.crm.objects.tasks.search_api.do_search(request)

    assert hubspot_sandbox.requests(path="/crm/v3/objects/tasks")[0].status == 201
    assert created.properties["hs_task_status"] == "NOT_STARTED"
    assert [(t.id, t.properties["hs_task_subject"]) for t in found.results] == [
        (created.id, "Call Ann")
    ]
    assert hubspot_sandbox.tasks()[0]["contacts"] == [contact]


@pytest.mark.parametrize(
    ("properties", "contact", "message"),
    [
        ({"hs_task_subject": "Call"}, None, "hs_timestamp is required"),
        ({"hs_timestamp": "soon"}, None, "soon is not a valid date"),
        ({"hs_timestamp": "1775206800000", "hs_task_priority": "URGENT"}, None, "URGENT"),
        ({"hs_timestamp": "1775206800000"}, "999999", "associations are invalid"),
    ],
)
def test_hubspot_refuses_what_the_api_refuses(
    hubspot_sandbox: HubSpotSandbox,
    properties: dict[str, str],
    contact: str | None,
    message: str,
) -> None:
    client = hubspot_client(hubspot_sandbox)
    target = contact or hubspot_contact(hubspot_sandbox)

    with pytest.raises(ApiException) as refused:
        client.crm.objects.tasks.basic_api.create(task_input(target, **properties))

    assert refused.value.status == 400
    body: dict[str, Any] = json.loads(refused.value.body)
    assert body["category"] == "VALIDATION_ERROR" and message in body["message"]
    assert hubspot_sandbox.tasks() == []


def test_salesforce_creates_a_task_for_a_contact_and_queries_it(
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    sf = salesforce_client(salesforce_sandbox)
    contact = salesforce_sandbox.add_contact(LastName="Lee")

    created: Any = sf.restful(
        "sobjects/Task/",
        method="POST",
        json={
            "WhoId": contact,
            "Subject": "Call",
            "Priority": "High",
            "ActivityDate": "2026-04-03",
        },
    )
    result = sf.query(f"SELECT Id, Description FROM Task WHERE WhoId = '{contact}'")

    assert created["success"] is True and created["id"].startswith("00T")
    assert [r["Id"] for r in result["records"]] == [created["id"]]
    [task] = salesforce_sandbox.tasks()
    assert (task["Status"], task["Priority"]) == ("Not Started", "High")


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"Subject": "Call", "Priority": "Urgent"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        ({"Subject": "x" * 256}, "STRING_TOO_LONG"),
        ({"Subject": "Call", "WhoId": "003000000000000AAA"}, "FIELD_INTEGRITY_EXCEPTION"),
        ({"Subject": "Call", "Colour__c": "red"}, "INVALID_FIELD"),
    ],
)
def test_salesforce_refuses_what_the_api_refuses(
    salesforce_sandbox: SalesforceSandbox, values: dict[str, str], code: str
) -> None:
    sf = salesforce_client(salesforce_sandbox)

    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.restful("sobjects/Task/", method="POST", json=values)

    content: Any = refused.value.content
    assert content[0]["errorCode"] == code
    assert salesforce_sandbox.tasks() == []


def test_salesforce_soql_cannot_filter_on_description(
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    sf = salesforce_client(salesforce_sandbox)

    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.query("SELECT Id FROM Task WHERE Description = 'x'")

    content: Any = refused.value.content
    assert content[0]["errorCode"] == "INVALID_FIELD"

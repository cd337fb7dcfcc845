"""Salesforce emulator over TLS, driven through simple-salesforce."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceOperationError,
    SalesforceRefusedRequest,
)

from sandbox.salesforce import FieldSpec, SalesforceSandbox
from tests.sandbox.clients import (
    salesforce_bulk2_contacts,
    salesforce_client,
    salesforce_contacts,
    salesforce_errors,
)

EXT = "Loyalty_Member_Id__c"
COLLECTION = f"composite/sobjects/Contact/{EXT}"


def contact(member_id: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Contact"}, EXT: member_id, **fields}


def upsert_collection(sf: Any, records: list[dict[str, Any]], all_or_none: bool = False) -> Any:
    body = {"allOrNone": all_or_none, "records": records}
    return sf.restful(COLLECTION, method="PATCH", json=body)


def test_collection_upsert_creates_then_updates(salesforce_sandbox: SalesforceSandbox) -> None:
    sf = salesforce_client(salesforce_sandbox)

    first = upsert_collection(sf, [contact("m-1", LastName="Nowak", Loyalty_Points__c=120)])
    second = upsert_collection(sf, [contact("m-1", LastName="Nowak", Loyalty_Points__c=150)])

    assert first[0]["success"] is True and first[0]["created"] is True
    assert second[0] == {"id": first[0]["id"], "success": True, "errors": [], "created": False}
    assert first[0]["id"].startswith("003") and len(first[0]["id"]) == 18
    (stored,) = salesforce_sandbox.contacts()
    assert stored["Loyalty_Points__c"] == 150
    recorded = salesforce_sandbox.requests(path="/services/data/v59.0/composite")[0]
    assert recorded.method == "PATCH"
    assert recorded.headers["authorization"] == f"Bearer {salesforce_sandbox.access_token}"


def test_collection_upsert_reports_per_record_failures(
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    sf = salesforce_client(salesforce_sandbox)

    results = upsert_collection(
        sf,
        [
            contact("m-1", LastName="Nowak"),
            contact("m-2", Email="ann@example.com"),
            contact("m-3", LastName="Kowal", Email="not-an-email"),
            contact("", LastName="Empty"),
            contact("m-5", LastName="Bool", HasOptedOutOfEmail="perhaps"),
        ],
    )

    assert [r["success"] for r in results] == [True, False, False, False, False]
    assert results[4]["errors"][0]["statusCode"] == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert results[1]["errors"][0]["fields"] == ["LastName"]
    assert results[2]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    assert results[3]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert [c[EXT] for c in salesforce_sandbox.contacts()] == ["m-1"]


def test_all_or_none_rolls_everything_back(salesforce_sandbox: SalesforceSandbox) -> None:
    sf = salesforce_client(salesforce_sandbox)

    results = upsert_collection(
        sf, [contact("m-1", LastName="Nowak"), contact("m-2")], all_or_none=True
    )

    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert salesforce_sandbox.contacts() == []


def test_collection_limits_and_unknown_fields_fail_the_request(
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    sf = salesforce_client(salesforce_sandbox)

    with pytest.raises(SalesforceMalformedRequest) as too_many:
        upsert_collection(sf, [contact(f"m-{i}", LastName="X") for i in range(201)])
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        upsert_collection(sf, [contact("m-1", LastName="X", Favourite_Colour__c="red")])

    assert salesforce_errors(too_many.value)[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert salesforce_errors(unknown.value)[0]["errorCode"] == "INVALID_FIELD"


def test_single_upsert_201_200_and_300(salesforce_sandbox: SalesforceSandbox) -> None:
    sf = salesforce_client(salesforce_sandbox)

    created = salesforce_contacts(sf).upsert(f"{EXT}/m-1", {"LastName": "Nowak"})
    updated = salesforce_contacts(sf).upsert(f"{EXT}/m-1", {"FirstName": "Ann"})
    salesforce_sandbox.add_contact(LastName="Twin", **{EXT: "m-2"})
    salesforce_sandbox.add_contact(LastName="Twin", **{EXT: "m-2"})
    with pytest.raises(SalesforceMoreThanOneRecord):
        salesforce_contacts(sf).upsert(f"{EXT}/m-2", {"FirstName": "Which"})

    assert (created, updated) == (201, 200)
    fetched = salesforce_contacts(sf).get_by_custom_id(EXT, "m-1")
    assert (fetched["FirstName"], fetched["LastName"]) == ("Ann", "Nowak")
    assert salesforce_contacts(sf).get(fetched["Id"])[EXT] == "m-1"


def test_describe_lists_the_configured_custom_fields(
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    sf = salesforce_client(salesforce_sandbox)
    before = {f["name"]: f for f in salesforce_contacts(sf).describe()["fields"]}

    salesforce_sandbox.set_custom_fields((FieldSpec(EXT, external_id=True, unique=True),))
    after = {f["name"] for f in salesforce_contacts(sf).describe()["fields"]}
    with pytest.raises(SalesforceMalformedRequest) as caught:
        upsert_collection(sf, [contact("m-1", LastName="X", Loyalty_Points__c=5)])

    assert before[EXT]["externalId"] is True and before[EXT]["custom"] is True
    assert before["Loyalty_Points__c"]["type"] == "double"
    assert "Loyalty_Points__c" not in after
    assert salesforce_errors(caught.value)[0]["errorCode"] == "INVALID_FIELD"


def test_incremental_query_pages_with_next_records_url(
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    sf = salesforce_client(salesforce_sandbox)
    for start in range(0, 450, 150):
        upsert_collection(sf, [contact(f"m-{i}", LastName="X") for i in range(start, start + 150)])
    cutoff = sorted(c["SystemModstamp"] for c in salesforce_sandbox.contacts())[49]
    since = _soql_datetime(cutoff)

    soql = (
        f"SELECT Id, {EXT}, SystemModstamp FROM Contact WHERE SystemModstamp > {since} "
        "ORDER BY SystemModstamp LIMIT 1000"
    )
    first = sf.query(soql)
    everything = sf.query_all(soql)

    assert first["done"] is False
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert len(first["records"]) == 200
    stamps = [r["SystemModstamp"] for r in everything["records"]]
    assert stamps == sorted(stamps)
    assert everything["totalSize"] == len(everything["records"]) == 400
    assert all(r["attributes"]["type"] == "Contact" for r in everything["records"])
    assert sf.query(soql.replace("LIMIT 1000", "LIMIT 5"))["totalSize"] == 5
    (only_name,) = sf.query("SELECT LastName FROM Contact LIMIT 1")["records"]
    assert set(only_name) == {"attributes", "LastName"}
    assert only_name["attributes"]["url"].startswith("/services/data/v59.0/sobjects/Contact/003")


def _soql_datetime(stamp: str) -> str:
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.") + f"{parsed.microsecond // 1000:03d}Z"


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM", "MALFORMED_QUERY"),
        ("SELECT Nope__c FROM Contact", "INVALID_FIELD"),
    ],
)
def test_bad_queries_are_400(salesforce_sandbox: SalesforceSandbox, soql: str, code: str) -> None:
    sf = salesforce_client(salesforce_sandbox)

    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query(soql)

    assert salesforce_errors(caught.value)[0]["errorCode"] == code


def test_bulk2_upsert_reports_successful_and_failed_results(
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    bulk2 = salesforce_bulk2_contacts(salesforce_client(salesforce_sandbox))
    records = [
        {EXT: "m-1", "LastName": "Nowak", "Email": "ann@example.com"},
        {EXT: "m-2", "LastName": "", "Email": "bob@example.com"},
        {EXT: "m-3", "LastName": "Kowal", "Email": "broken"},
    ]

    (result,) = bulk2.upsert(records=records, external_id_field=EXT, wait=0)
    succeeded = bulk2.get_successful_records(result["job_id"])
    failed = bulk2.get_failed_records(result["job_id"])

    assert result["numberRecordsProcessed"] == 3
    assert result["numberRecordsFailed"] == 2
    assert succeeded.splitlines()[0].startswith('"sf__Id","sf__Created"')
    assert '"true"' in succeeded.splitlines()[1]
    assert "REQUIRED_FIELD_MISSING" in failed
    assert "INVALID_EMAIL_ADDRESS" in failed
    paths = [
        (r.method, r.path.split("/jobs/ingest")[-1][:1]) for r in salesforce_sandbox.requests()
    ]
    assert paths[:3] == [("POST", ""), ("PUT", "/"), ("PATCH", "/")]


def test_bulk2_job_in_progress_then_complete(salesforce_sandbox: SalesforceSandbox) -> None:
    salesforce_sandbox.bulk.processing_delay_s = 0.3
    bulk2 = salesforce_bulk2_contacts(salesforce_client(salesforce_sandbox))

    (result,) = bulk2.upsert(
        records=[{EXT: "m-1", "LastName": "Nowak"}], external_id_field=EXT, wait=0.1
    )

    polls = salesforce_sandbox.requests(method="GET")
    assert result["numberRecordsFailed"] == 0
    assert len(polls) >= 3  # InProgress at least once, then JobComplete, then the final read


def test_bulk2_unknown_column_fails_the_job(salesforce_sandbox: SalesforceSandbox) -> None:
    bulk2 = salesforce_bulk2_contacts(salesforce_client(salesforce_sandbox))

    with pytest.raises(SalesforceOperationError) as caught:
        bulk2.upsert(
            records=[{EXT: "m-1", "LastName": "X", "Nope__c": "1"}], external_id_field=EXT, wait=0
        )

    assert "Field name not found : Nope__c" in str(caught.value)


def test_limit_info_header_and_request_limit_exceeded(
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    salesforce_sandbox.daily_api_limit = 3
    sf = salesforce_client(salesforce_sandbox)

    query = "SELECT Id FROM Contact"
    sf.query(query)
    sf.query(query)
    used = sf.api_usage["api-usage"]
    sf.query(query)
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query(query)

    assert (used.used, used.total) == (2, 3)
    assert salesforce_errors(caught.value) == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]


def test_expired_session_is_401_invalid_session_id(
    salesforce_sandbox: SalesforceSandbox,
) -> None:
    sf = salesforce_client(salesforce_sandbox)
    salesforce_contacts(sf).describe()

    salesforce_sandbox.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as caught:
        salesforce_contacts(sf).describe()

    assert salesforce_errors(caught.value)[0]["errorCode"] == "INVALID_SESSION_ID"

"""Follow-up tasks on Salesforce: a `Task` whose `WhoId` is the member's contact.

Apart from `crm_sync.tasks` so that simple-salesforce (and the SOAP client it brings)
is imported only where Salesforce is configured.
"""

from __future__ import annotations

from typing import Any

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError
from simple_salesforce.format import format_soql

from crm_sync.tasks import (
    SALESFORCE_PRIORITY,
    SEARCH_LIMIT,
    TIMEOUT,
    TaskRefused,
    TaskRetry,
    TaskSpec,
)

__all__ = ["SalesforceTasks"]


class SalesforceTasks:
    """Tasks through simple-salesforce (`Task` sObject, WhoId = the contact)."""

    name = "salesforce"

    def __init__(self, client: Salesforce) -> None:
        self.client = client

    def find(self, contact_id: str, spec: TaskSpec) -> str | None:
        # Description is a long text area, which SOQL cannot filter: read it and compare here.
        soql = format_soql(
            "SELECT Id, Description FROM Task WHERE WhoId = {} AND Subject = {} LIMIT {}",
            contact_id,
            spec.subject,
            SEARCH_LIMIT,
        )
        result = _salesforce_call(lambda: self.client.query(soql, timeout=TIMEOUT))
        for record in result.get("records") or []:
            if spec.reference in (record.get("Description") or ""):
                return str(record["Id"])
        return None

    def create(self, contact_id: str, spec: TaskSpec) -> str:
        values: dict[str, Any] = {
            "WhoId": contact_id,
            "Subject": spec.subject,
            "Description": spec.notes(),
            "ActivityDate": spec.due_date,
            "Priority": SALESFORCE_PRIORITY[spec.priority],
            "Status": "Not Started",
        }
        if spec.owner:
            values["OwnerId"] = spec.owner
        created = _salesforce_call(
            lambda: self.client.restful(
                "sobjects/Task/", method="POST", json=values, timeout=TIMEOUT
            )
        )
        return str(created["id"])


def _salesforce_call(call: Any) -> Any:
    try:
        return call()
    except requests.RequestException as exc:
        raise TaskRetry(f"salesforce: {type(exc).__name__}") from exc
    except SalesforceError as exc:
        status = int(exc.status)
        content: list[Any] = exc.content if isinstance(exc.content, list) else []
        first = content[0] if content and isinstance(content[0], dict) else {}
        code, message = first.get("errorCode", ""), first.get("message", "no details")
        if status >= 500 or code == "REQUEST_LIMIT_EXCEEDED":
            raise TaskRetry(f"salesforce {status} {code}: {message}".strip()) from exc
        hint = " (check the Salesforce credentials)" if status == 401 else ""
        raise TaskRefused(f"salesforce {status} {code}: {message}{hint}") from exc

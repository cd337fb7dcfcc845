"""Follow-up tasks on members' CRM contacts (journey `crm_task` steps), once per step and CRM.

HubSpot: a task object (`POST /crm/v3/objects/tasks`) associated with the contact
(association type 204, task to contact). Salesforce (`crm_sync.salesforce_tasks`): a
`Task` whose `WhoId` is the contact. Every task's notes end with a reference line
derived from the step's idempotency key (`TaskSpec.reference`). A try that follows
one whose answer may have been lost first looks for a task on the contact carrying
that reference, so a retry never opens a second task. HubSpot's search index trails
writes by a few seconds, which the send backoff (SEND_RETRY_BASE_SECONDS) comfortably
covers.

Failures are sorted as the sync sorts them: 429, 5xx and network trouble are
`TaskRetry` (try the step again later), anything else is `TaskRefused` (fails for
this CRM, with the CRM's status and message).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import urllib3
from hubspot import HubSpot
from hubspot.crm.objects.tasks import (
    AssociationSpec,
    Filter,
    FilterGroup,
    PublicAssociationsForObject,
    PublicObjectId,
    PublicObjectSearchRequest,
    SimplePublicObjectInputForCreate,
)

from loyalty.app import App

__all__ = [
    "HubSpotTasks",
    "TaskOpener",
    "TaskRefused",
    "TaskRetry",
    "TaskSpec",
    "open_task",
    "task_openers",
]

#: HubSpot's association type id for task → contact (category HUBSPOT_DEFINED).
TASK_TO_CONTACT = 204
#: Tasks one look-up reads on a contact; a member with more open follow-ups is unusual.
SEARCH_LIMIT = 100
HUBSPOT_PRIORITY = {"low": "LOW", "medium": "MEDIUM", "high": "HIGH"}
SALESFORCE_PRIORITY = {"low": "Low", "medium": "Normal", "high": "High"}
REFERENCE_PREFIX = "Loyalty reference: "
#: Connect and read timeouts of one CRM call, in seconds.
TIMEOUT = (5.0, 60.0)


class TaskRetry(Exception):
    """The CRM could not take the task now (429, 5xx, network); try the step again."""


class TaskRefused(Exception):
    """The CRM refused the task for good (bad owner id, missing permission, …)."""


@dataclass(frozen=True)
class TaskSpec:
    """One follow-up task as the step decided it."""

    key: str
    subject: str
    body: str
    due_at: datetime
    due_date: str
    priority: str
    owner: str | None = None

    @property
    def reference(self) -> str:
        """A token naming this step's task, kept in the task's notes and looked for on retries."""
        return "lj-" + hashlib.sha256(self.key.encode()).hexdigest()[:24]

    def notes(self) -> str:
        text = self.body.rstrip()
        return (
            f"{text}\n\n{REFERENCE_PREFIX}{self.reference}"
            if text
            else (f"{REFERENCE_PREFIX}{self.reference}")
        )


class TaskOpener(Protocol):
    name: str

    def find(self, contact_id: str, spec: TaskSpec) -> str | None:
        """The id of this step's task on the contact, if one was opened."""
        ...

    def create(self, contact_id: str, spec: TaskSpec) -> str:
        """Open the task on the contact; its id."""
        ...


def open_task(opener: TaskOpener, contact_id: str, spec: TaskSpec, *, look_first: bool) -> str:
    """The task's id: found (when an earlier try may have opened it) or newly opened."""
    if look_first:
        found = opener.find(contact_id, spec)
        if found is not None:
            return found
    return opener.create(contact_id, spec)


class HubSpotTasks:
    """Tasks through hubspot-api-client (CRM v3 objects/tasks)."""

    name = "hubspot"

    def __init__(self, access_token: str, base_url: str) -> None:
        self.client = HubSpot(access_token=access_token, host=base_url.rstrip("/"))

    def find(self, contact_id: str, spec: TaskSpec) -> str | None:
        request = PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[
                        Filter(
                            property_name="associations.contact", operator="EQ", value=contact_id
                        ),
                        Filter(property_name="hs_task_subject", operator="EQ", value=spec.subject),
                    ]
                )
            ],
            properties=["hs_task_subject", "hs_task_body"],
            limit=SEARCH_LIMIT,
        )
        search = self.client.crm.objects.tasks.search_api
        page = _hubspot_call(lambda: search.do_search(request, _request_timeout=TIMEOUT))
        for task in page.results or []:
            if spec.reference in ((task.properties or {}).get("hs_task_body") or ""):
                return str(task.id)
        return None

    def create(self, contact_id: str, spec: TaskSpec) -> str:
        properties = {
            "hs_timestamp": spec.due_at.isoformat().replace("+00:00", "Z"),
            "hs_task_subject": spec.subject,
            "hs_task_body": spec.notes(),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": HUBSPOT_PRIORITY[spec.priority],
            "hs_task_type": "TODO",
        }
        if spec.owner:
            properties["hubspot_owner_id"] = spec.owner
        task = SimplePublicObjectInputForCreate(
            properties=properties,
            associations=[
                PublicAssociationsForObject(
                    to=PublicObjectId(id=contact_id),
                    types=[
                        AssociationSpec(
                            association_category="HUBSPOT_DEFINED",
                            association_type_id=TASK_TO_CONTACT,
                        )
                    ],
                )
            ],
        )
        basic = self.client.crm.objects.tasks.basic_api
        created = _hubspot_call(lambda: basic.create(task, _request_timeout=TIMEOUT))
        return str(created.id)


def _hubspot_call(call: Any) -> Any:
    try:
        return call()
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise TaskRetry(f"hubspot: {type(exc).__name__}") from exc
    except Exception as exc:
        status = getattr(exc, "status", None)
        if not isinstance(status, int) or not hasattr(exc, "body"):
            raise
        message = _hubspot_message(getattr(exc, "body", None))
        if status == 429 or status >= 500:
            raise TaskRetry(f"hubspot {status}: {message}") from exc
        hint = " (check HUBSPOT_ACCESS_TOKEN and its scopes)" if status in (401, 403) else ""
        raise TaskRefused(f"hubspot {status}: {message}{hint}") from exc


def _hubspot_message(body: object) -> str:
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else {}
    except ValueError:
        return "no details"
    return str(data.get("message") or "no details") if isinstance(data, dict) else "no details"


def task_openers(app: App) -> dict[str, TaskOpener]:
    """An opener for every configured CRM, built from the settings."""
    from crm_sync.adapters import configured_crms
    from crm_sync.salesforce import connect
    from crm_sync.salesforce_tasks import SalesforceTasks

    settings = app.settings
    openers: dict[str, TaskOpener] = {}
    for crm in configured_crms(settings):
        if crm == "hubspot" and settings.hubspot_access_token:
            openers[crm] = HubSpotTasks(settings.hubspot_access_token, settings.hubspot_base_url)
        elif crm == "salesforce":
            client = connect(
                version=settings.salesforce_api_version,
                instance_url=settings.salesforce_instance_url,
                access_token=settings.salesforce_access_token,
                username=settings.salesforce_username,
                consumer_key=settings.salesforce_consumer_key,
                private_key_file=(
                    str(settings.salesforce_private_key_file)
                    if settings.salesforce_private_key_file
                    else None
                ),
                domain=settings.salesforce_login_domain,
                ca_bundle=str(settings.salesforce_ca_bundle)
                if settings.salesforce_ca_bundle
                else None,
            )
            openers[crm] = SalesforceTasks(client)
    return openers

"""HubSpot tasks (CRM v3 `objects/tasks`): create with associations, read, search.

What the emulator checks is what HubSpot refuses: `hs_timestamp` is required and must be
epoch milliseconds or ISO 8601; status, priority and type take HubSpot's values; an
association names an existing contact with a HUBSPOT_DEFINED task-to-contact type (204).
Search filters on task properties and on `associations.contact`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox.hubspot_store import CrmError, iso_now

__all__ = ["Task", "TaskStore"]

TASK_TO_CONTACT = 204
STATUSES = {"NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"}
PRIORITIES = {"NONE", "LOW", "MEDIUM", "HIGH"}
TYPES = {"TODO", "EMAIL", "CALL", "LINKED_IN"}
KNOWN = {
    "hs_timestamp",
    "hs_task_subject",
    "hs_task_body",
    "hs_task_status",
    "hs_task_priority",
    "hs_task_type",
    "hs_task_reminders",
    "hubspot_owner_id",
}
DEFAULT_PROPERTIES = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")


@dataclass
class Task:
    id: str
    properties: dict[str, str]
    contacts: list[str]
    created_at: str
    updated_at: str

    def to_json(self, names: list[str] | None) -> dict[str, Any]:
        wanted = names if names else list(DEFAULT_PROPERTIES)
        return {
            "id": self.id,
            "properties": {name: self.properties.get(name) for name in wanted},
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": False,
        }


@dataclass
class TaskStore:
    """The portal's tasks; callers hold the emulator lock."""

    tasks: dict[str, Task] = field(default_factory=dict)
    next_id: int = 90_001

    def create(self, body: dict[str, Any], contact_exists: Callable[[str], bool]) -> Task:
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise CrmError(400, "VALIDATION_ERROR", "Invalid input JSON: properties is required")
        _check_properties(properties)
        contacts = _associated_contacts(body.get("associations") or [], contact_exists)
        now = iso_now()
        task_id = str(self.next_id)
        self.next_id += 1
        values = {k: ("" if v is None else str(v)) for k, v in properties.items()}
        values.setdefault("hs_task_status", "NOT_STARTED")
        values.update(hs_createdate=now, hs_lastmodifieddate=now, hs_object_id=task_id)
        task = Task(task_id, values, contacts, now, now)
        self.tasks[task_id] = task
        return task

    def search(self, body: dict[str, Any]) -> list[Task]:
        groups = body.get("filterGroups") or []
        found = [
            t
            for t in self.tasks.values()
            if not groups
            or any(all(_matches(t, f) for f in g.get("filters") or []) for g in groups)
        ]
        return sorted(found, key=lambda t: int(t.id))


def _check_properties(properties: dict[str, Any]) -> None:
    problems: list[dict[str, Any]] = []

    def refuse(name: str, error: str, message: str) -> None:
        problems.append({"isValid": False, "message": message, "error": error, "name": name})

    for name in properties:
        if name not in KNOWN:
            refuse(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
    stamp = properties.get("hs_timestamp")
    if stamp in (None, ""):
        refuse("hs_timestamp", "REQUIRED_FIELD", "hs_timestamp is required")
    elif not _is_timestamp(str(stamp)):
        refuse("hs_timestamp", "INVALID_DATE", f"{stamp} is not a valid date")
    for name, allowed in (
        ("hs_task_status", STATUSES),
        ("hs_task_priority", PRIORITIES),
        ("hs_task_type", TYPES),
    ):
        value = properties.get(name)
        if value is not None and value not in allowed:
            message = f"{value} was not one of the allowed options: {sorted(allowed)}"
            refuse(name, "INVALID_OPTION", message)
    if problems:
        raise CrmError(
            400, "VALIDATION_ERROR", "Property values were not valid: " + json.dumps(problems)
        )


def _is_timestamp(value: str) -> bool:
    if value.isdigit():
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _associated_contacts(
    associations: list[dict[str, Any]], contact_exists: Callable[[str], bool]
) -> list[str]:
    contacts = []
    for association in associations:
        target = str((association.get("to") or {}).get("id", ""))
        types = association.get("types") or []
        valid = any(
            t.get("associationCategory") == "HUBSPOT_DEFINED"
            and int(t.get("associationTypeId", 0)) == TASK_TO_CONTACT
            for t in types
        )
        if not valid:
            raise CrmError(
                400,
                "VALIDATION_ERROR",
                f"association types {types} are not valid from task to contact",
            )
        if not contact_exists(target):
            raise CrmError(
                400, "VALIDATION_ERROR", f"One or more associations are invalid: contact {target}"
            )
        contacts.append(target)
    return contacts


def _matches(task: Task, flt: dict[str, Any]) -> bool:
    name, op, value = flt.get("propertyName", ""), flt.get("operator", "EQ"), flt.get("value")
    if name == "associations.contact":
        inside = str(value) in task.contacts
        return inside if op == "EQ" else not inside if op == "NEQ" else False
    actual = task.id if name == "hs_object_id" else task.properties.get(name)
    if op == "HAS_PROPERTY":
        return actual is not None
    if op == "CONTAINS_TOKEN":
        return actual is not None and str(value).lower().strip("*") in actual.lower()
    if op == "EQ":
        return actual is not None and actual.lower() == str(value).lower()
    if op == "NEQ":
        return actual is None or actual.lower() != str(value).lower()
    raise CrmError(400, "VALIDATION_ERROR", f"operator {op} is not supported on tasks here")

"""HubSpot CRM state: contacts, property definitions and the search engine."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Contact", "CrmError", "HubSpotStore", "iso_now", "property_definition"]

PROPERTY_TYPES = {"string", "number", "date", "datetime", "enumeration", "bool"}
FIELD_TYPES = {
    "text",
    "textarea",
    "number",
    "date",
    "select",
    "radio",
    "checkbox",
    "booleancheckbox",
    "phonenumber",
    "file",
    "html",
    "calculation_equation",
}
#: Returned when a read names no properties, as HubSpot does.
DEFAULT_PROPERTIES = (
    "createdate",
    "email",
    "firstname",
    "hs_object_id",
    "lastmodifieddate",
    "lastname",
)
READ_ONLY = {"createdate", "lastmodifieddate", "hs_object_id"}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class CrmError(Exception):
    """A HubSpot error: HTTP status, category and message."""

    def __init__(self, status: int, category: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.extra = extra


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def property_definition(
    name: str,
    label: str,
    type_: str = "string",
    field_type: str = "text",
    group: str = "contactinformation",
    *,
    unique: bool = False,
    options: list[dict[str, Any]] | None = None,
    read_only: bool = False,
) -> dict[str, Any]:
    now = iso_now()
    return {
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "groupName": group,
        "description": "",
        "options": options or [],
        "displayOrder": -1,
        "hasUniqueValue": unique,
        "hidden": False,
        "formField": not read_only,
        "calculated": False,
        "externalOptions": False,
        "archived": False,
        "createdAt": now,
        "updatedAt": now,
        "modificationMetadata": {
            "archivable": not read_only,
            "readOnlyDefinition": read_only,
            "readOnlyValue": read_only,
        },
    }


def _default_properties() -> dict[str, dict[str, Any]]:
    defs = [
        property_definition("email", "Email", unique=True),
        property_definition("firstname", "First Name"),
        property_definition("lastname", "Last Name"),
        property_definition("phone", "Phone Number", field_type="phonenumber"),
        property_definition("mobilephone", "Mobile Phone Number", field_type="phonenumber"),
        property_definition("lifecyclestage", "Lifecycle Stage", "enumeration", "radio"),
        property_definition("createdate", "Create Date", "datetime", "date", read_only=True),
        property_definition(
            "lastmodifieddate", "Last Modified", "datetime", "date", read_only=True
        ),
        property_definition("hs_object_id", "Record ID", "number", "number", read_only=True),
    ]
    return {d["name"]: d for d in defs}


@dataclass
class Contact:
    id: str
    properties: dict[str, str]
    created_at: str
    updated_at: str
    archived: bool = False

    def to_json(self, names: list[str] | None) -> dict[str, Any]:
        wanted = names if names else DEFAULT_PROPERTIES
        return {
            "id": self.id,
            "properties": {name: self.properties.get(name) for name in wanted},
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "archived": self.archived,
        }


@dataclass
class HubSpotStore:
    """Contacts and properties of one portal; callers hold the emulator lock."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    properties: dict[str, dict[str, Any]] = field(default_factory=_default_properties)
    groups: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "contactinformation": {
                "name": "contactinformation",
                "label": "Contact information",
                "displayOrder": 0,
                "archived": False,
            }
        }
    )
    gdpr_blocklist: set[str] = field(default_factory=set)
    next_id: int = 101
    #: (property, lower-cased value) -> contact id, for properties with unique values.
    unique_index: dict[tuple[str, str], str] = field(default_factory=dict)

    # -- writes ------------------------------------------------------------------

    def check_known(self, properties: dict[str, Any]) -> None:
        """An unknown or read-only property fails the whole request, as HubSpot does."""
        bad = [n for n in properties if n not in self.properties or n in READ_ONLY]
        if bad:
            detail = ", ".join(f'Property "{n}" does not exist' for n in bad)
            raise CrmError(400, "VALIDATION_ERROR", f"Property values were not valid: {detail}")

    def invalid_values(self, properties: dict[str, Any]) -> list[dict[str, Any]]:
        """Per-input value errors (these become 207 entries in batch calls)."""
        errors = []
        for name, raw in properties.items():
            value = "" if raw is None else str(raw)
            kind = self.properties[name]["type"]
            if value == "":
                continue
            if name == "email" and not EMAIL_RE.match(value):
                errors.append(_detail(name, "INVALID_EMAIL", f"Email address {value} is invalid"))
            elif kind == "number" and not _is_number(value):
                msg = f"{value} was not a valid number."
                errors.append(_detail(name, "INVALID_INTEGER", msg))
            elif kind in ("date", "datetime") and _epoch_ms(value) is None:
                msg = f"{value} is not a valid date; use epoch milliseconds or ISO 8601."
                errors.append(_detail(name, "INVALID_DATE", msg))
            elif kind == "bool" and value.lower() not in ("true", "false"):
                errors.append(_detail(name, "INVALID_BOOLEAN", f"{value} is not a boolean."))
            elif kind == "enumeration":
                options = {o["value"] for o in self.properties[name]["options"]}
                if options and not set(value.split(";")) <= options:
                    msg = f"{value} was not one of the allowed options: {sorted(options)}"
                    errors.append(_detail(name, "INVALID_OPTION", msg))
        return errors

    def conflict(self, properties: dict[str, Any], own_id: str | None) -> str | None:
        for name, value in properties.items():
            if value and self.properties[name]["hasUniqueValue"]:
                existing = self.unique_index.get((name, str(value).lower()))
                if existing is not None and existing != own_id:
                    return existing
        return None

    def create(self, properties: dict[str, Any]) -> Contact:
        now = iso_now()
        contact_id = str(self.next_id)
        self.next_id += 1
        contact = Contact(contact_id, {}, now, now)
        contact.properties.update(createdate=now, hs_object_id=contact_id)
        self.contacts[contact_id] = contact
        self.write(contact, properties, now)
        return contact

    def write(self, contact: Contact, properties: dict[str, Any], now: str | None = None) -> None:
        now = now or iso_now()
        for name, raw in properties.items():
            value = "" if raw is None else str(raw)
            if self.properties[name]["hasUniqueValue"]:
                old = contact.properties.get(name)
                if old:
                    self.unique_index.pop((name, old.lower()), None)
                if value:
                    self.unique_index[(name, value.lower())] = contact.id
            if value == "":
                contact.properties.pop(name, None)
            else:
                contact.properties[name] = value
        contact.properties["lastmodifieddate"] = now
        contact.updated_at = now

    def delete(self, contact: Contact) -> None:
        for name, value in contact.properties.items():
            if name in self.properties and self.properties[name]["hasUniqueValue"]:
                self.unique_index.pop((name, value.lower()), None)
        self.contacts.pop(contact.id, None)

    # -- property definitions ------------------------------------------------------

    def create_group(self, body: dict[str, Any]) -> dict[str, Any]:
        name, label = body.get("name"), body.get("label")
        if not name or not label:
            raise CrmError(400, "VALIDATION_ERROR", "name and label are required")
        if name in self.groups:
            msg = f"Property group named '{name}' already exists."
            raise CrmError(409, "OBJECT_ALREADY_EXISTS", msg)
        order = body.get("displayOrder", -1)
        group = {"name": name, "label": label, "displayOrder": order, "archived": False}
        self.groups[name] = group
        return group

    def create_property(self, body: dict[str, Any]) -> dict[str, Any]:
        required = ("name", "label", "type", "fieldType", "groupName")
        missing = [k for k in required if not body.get(k)]
        if missing:
            raise CrmError(400, "VALIDATION_ERROR", f"Missing required fields: {missing}")
        if body["type"] not in PROPERTY_TYPES or body["fieldType"] not in FIELD_TYPES:
            raise CrmError(400, "VALIDATION_ERROR", "Invalid type or fieldType")
        if body["groupName"] not in self.groups:
            raise CrmError(400, "VALIDATION_ERROR", f"Group {body['groupName']} does not exist")
        if body["type"] == "enumeration" and not body.get("options"):
            raise CrmError(400, "VALIDATION_ERROR", "Enumeration properties need options")
        if body["name"] in self.properties:
            msg = f"Property named '{body['name']}' already exists."
            raise CrmError(409, "OBJECT_ALREADY_EXISTS", msg)
        options = [
            {"hidden": False, "displayOrder": i, **option}
            for i, option in enumerate(body.get("options") or [])
        ]
        definition = property_definition(
            body["name"],
            body["label"],
            body["type"],
            body["fieldType"],
            body["groupName"],
            unique=bool(body.get("hasUniqueValue")),
            options=options,
        )
        definition["description"] = body.get("description", "")
        self.properties[body["name"]] = definition
        return definition

    def update_property(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        definition = self.properties.get(name)
        if definition is None:
            raise CrmError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name}")
        if "hasUniqueValue" in body and body["hasUniqueValue"] != definition["hasUniqueValue"]:
            raise CrmError(400, "VALIDATION_ERROR", "hasUniqueValue cannot be changed")
        for key in ("label", "description", "groupName", "options", "fieldType", "hidden"):
            if key in body:
                definition[key] = body[key]
        definition["updatedAt"] = iso_now()
        return definition

    # -- reads -------------------------------------------------------------------

    def find(self, value: str, id_property: str | None) -> Contact | None:
        if not id_property or id_property == "hs_object_id":
            return self.contacts.get(str(value))
        definition = self.properties.get(id_property)
        if definition is None or not definition["hasUniqueValue"]:
            msg = f"Property {id_property} is not a unique identifier property"
            raise CrmError(400, "VALIDATION_ERROR", msg)
        found = self.unique_index.get((id_property, str(value).lower()))
        return self.contacts.get(found) if found else None

    def search(self, body: dict[str, Any]) -> list[Contact]:
        """Contacts matching filterGroups (OR of ANDs) and query, in the requested order."""
        groups = body.get("filterGroups") or []
        if len(groups) > 5 or sum(len(g.get("filters") or []) for g in groups) > 18:
            raise CrmError(400, "VALIDATION_ERROR", "Too many filter groups or filters")
        query = (body.get("query") or "").lower()
        matches = [
            c
            for c in self.contacts.values()
            if (not groups or any(self._group_matches(c, g) for g in groups))
            and (not query or _query_matches(c, query))
        ]
        matches.sort(key=lambda c: int(c.id))
        for sort in reversed(body.get("sorts") or []):
            name, descending = _sort_spec(sort)
            matches.sort(key=self._sort_key_for(name), reverse=descending)
        return matches

    def _group_matches(self, contact: Contact, group: dict[str, Any]) -> bool:
        return all(self._filter_matches(contact, f) for f in group.get("filters") or [])

    def _filter_matches(self, contact: Contact, flt: dict[str, Any]) -> bool:
        name = flt.get("propertyName", "")
        op = flt.get("operator", "EQ")
        actual = contact.id if name == "hs_object_id" else contact.properties.get(name)
        if op == "HAS_PROPERTY":
            return actual is not None
        if op == "NOT_HAS_PROPERTY":
            return actual is None
        kind = self.properties.get(name, {}).get("type", "string")
        if op in ("IN", "NOT_IN"):
            values = {self._norm(v, kind) for v in flt.get("values") or []}
            inside = actual is not None and self._norm(actual, kind) in values
            return inside if op == "IN" else not inside
        if op == "CONTAINS_TOKEN":
            token = str(flt.get("value", "")).lower().strip("*")
            return actual is not None and token in actual.lower()
        if actual is None:
            return bool(op == "NEQ")
        left, right = self._norm(actual, kind), self._norm(flt.get("value"), kind)
        if op == "BETWEEN":
            high = self._norm(flt.get("highValue"), kind)
            return bool(right <= left <= high)
        compare = {
            "EQ": left == right,
            "NEQ": left != right,
            "GT": left > right,
            "GTE": left >= right,
            "LT": left < right,
            "LTE": left <= right,
        }
        if op not in compare:
            raise CrmError(400, "VALIDATION_ERROR", f"Unsupported operator {op}")
        return bool(compare[op])

    def _norm(self, value: Any, kind: str) -> Any:
        text = "" if value is None else str(value)
        if kind in ("number",) and _is_number(text):
            return float(text)
        if kind in ("datetime", "date"):
            return _epoch_ms(text) or 0.0
        return text.lower()

    def _sort_key_for(self, name: str) -> Callable[[Contact], tuple[int, Any]]:
        return lambda contact: self._sort_key(contact, name)

    def _sort_key(self, contact: Contact, name: str) -> tuple[int, Any]:
        value = contact.id if name == "hs_object_id" else contact.properties.get(name)
        kind = self.properties.get(name, {}).get("type", "string")
        if name == "hs_object_id":
            kind = "number"
        return (0, "") if value is None else (1, self._norm(value, kind))


def _detail(name: str, code: str, message: str) -> dict[str, Any]:
    return {"message": message, "code": code, "context": {"propertyName": [name]}}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _epoch_ms(text: str) -> float | None:
    if _is_number(text):
        return float(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp() * 1000


def _query_matches(contact: Contact, query: str) -> bool:
    fields = ("email", "firstname", "lastname", "phone")
    return any(query in contact.properties.get(f, "").lower() for f in fields)


def _sort_spec(sort: Any) -> tuple[str, bool]:
    if isinstance(sort, dict):
        return str(sort.get("propertyName", "")), sort.get("direction") == "DESCENDING"
    text = str(sort)
    return (text[1:], True) if text.startswith("-") else (text, False)

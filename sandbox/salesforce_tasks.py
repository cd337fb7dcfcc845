"""Salesforce `Task` records: create (WhoId = a Contact) and SOQL over them.

The checks are Salesforce's: restricted picklists for Status and Priority, Subject at
most 255 characters, ActivityDate a date, WhoId an existing contact, no unknown
fields; and SOQL refuses a long text area (Description) in WHERE.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

from sandbox.salesforce_store import SfError, record_id, sf_datetime
from sandbox.soql import Query, run_query

__all__ = ["TASK_FIELDS", "TaskStore"]

TASK_FIELDS = (
    "Id",
    "WhoId",
    "WhatId",
    "Subject",
    "Description",
    "ActivityDate",
    "Priority",
    "Status",
    "OwnerId",
    "CreatedDate",
)
WRITABLE = {
    "WhoId",
    "WhatId",
    "Subject",
    "Description",
    "ActivityDate",
    "Priority",
    "Status",
    "OwnerId",
}
PICKLISTS = {
    "Status": {"Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"},
    "Priority": {"High", "Normal", "Low"},
}
#: Long text areas: readable, but never filterable in SOQL.
NOT_FILTERABLE = {"Description"}


class TaskStore:
    """The org's tasks; callers hold the emulator lock."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def create(self, values: dict[str, Any], contacts: set[str]) -> str:
        unknown = [name for name in values if name not in WRITABLE]
        if unknown:
            raise SfError(
                400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type Task"
            )
        for name, allowed in PICKLISTS.items():
            value = values.get(name)
            if value is not None and value not in allowed:
                raise SfError(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{name}: bad value for restricted picklist field: {value}",
                    [name],
                )
        if len(str(values.get("Subject") or "")) > 255:
            raise SfError(400, "STRING_TOO_LONG", "Subject: data value too large", ["Subject"])
        if values.get("ActivityDate") is not None:
            try:
                date.fromisoformat(str(values["ActivityDate"]))
            except ValueError:
                raise SfError(
                    400,
                    "JSON_PARSER_ERROR",
                    f"Cannot deserialize instance of date from VALUE_STRING value "
                    f"{values['ActivityDate']}",
                ) from None
        who = values.get("WhoId")
        if who is not None and who not in contacts:
            raise SfError(
                400,
                "FIELD_INTEGRITY_EXCEPTION",
                f"Name ID: id value of incorrect type: {who}",
                ["WhoId"],
            )
        task_id = record_id("00T", next(self._ids))
        self.records[task_id] = {
            "Id": task_id,
            "Status": "Not Started",
            "Priority": "Normal",
            **values,
            "CreatedDate": sf_datetime(datetime.now(UTC)),
        }
        return task_id

    def query(self, query: Query) -> list[dict[str, Any]]:
        for condition in query.conditions:
            if condition.field in NOT_FILTERABLE:
                raise SfError(
                    400,
                    "INVALID_FIELD",
                    f"field '{condition.field}' can not be filtered in a query call",
                )
        return run_query(query, list(self.records.values()), set(TASK_FIELDS))

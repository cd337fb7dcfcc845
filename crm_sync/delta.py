"""What a CRM should hold for a member, as plain strings, and its hash.

Values are reduced to one canonical text per property before hashing, so that a
member whose mapped values did not change hashes the same on every run and is not
pushed again. The adapters turn these texts into their wire types.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from crm_sync.mapping import Crm, Mapping, ValueType

__all__ = ["ERASED", "Props", "canonical", "crm_props", "props_hash"]

#: CRM property name → canonical text, or None for "empty".
Props = dict[str, str | None]

#: Stored as the pushed hash once a member was erased from a CRM: never pushed again.
ERASED = "erased"


def canonical(kind: ValueType, value: Any) -> str | None:
    """One text per value, whatever Python type it arrived in."""
    if value is None or value == "":
        return None
    if kind == "bool":
        if isinstance(value, str):
            return "true" if value.strip().lower() in ("true", "1", "yes") else "false"
        return "true" if value else "false"
    if kind == "number":
        number = Decimal(str(value))
        if number == number.to_integral_value():
            return str(int(number))
        return format(number.normalize(), "f")
    if kind == "datetime":
        moment = value if isinstance(value, datetime) else _parse_instant(str(value))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")
    return str(value)


def _parse_instant(text: str) -> datetime:
    text = text.strip()
    if text.isdigit():  # HubSpot epoch milliseconds
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    if text[-5:-4] in "+-" and text[-3] != ":":  # Salesforce +0000
        text = f"{text[:-2]}:{text[-2:]}"
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def crm_props(mapping: Mapping, crm: Crm, values: dict[str, Any]) -> Props:
    """The properties this CRM should hold for one member (`member_values` row)."""
    props: Props = {}
    for mapped in mapping.pushed(crm):
        name = mapped.name_in(crm)
        assert name is not None
        props[name] = canonical(mapped.type, values.get(mapped.field))
    return props


def props_hash(props: Props) -> str:
    """A stable digest of the properties, stored on the member's CRM link."""
    text = json.dumps(props, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

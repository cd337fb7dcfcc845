"""The Salesforce org an admin would have set up for the shipped CRM mapping."""

from __future__ import annotations

from pathlib import Path

from crm_sync.mapping import FieldMap, JourneyProperty, load_mapping
from sandbox.salesforce_store import FieldSpec

__all__ = ["mapped_custom_fields"]

#: Our mapping's value types → Salesforce field types.
SF_TYPES = {"string": "string", "number": "double", "datetime": "datetime", "bool": "boolean"}


def mapped_custom_fields(
    mapping_file: Path | None = None, *, leave_out: tuple[str, ...] = ()
) -> tuple[FieldSpec, ...]:
    """A custom field for every mapped Salesforce name (the key field as the external id)."""
    mapping = load_mapping(mapping_file)
    specs = []
    entries: list[FieldMap | JourneyProperty] = [*mapping.fields, *mapping.journey_properties]
    for entry in entries:
        name = entry.salesforce
        if name and name.endswith("__c") and name not in leave_out:
            key = name == mapping.key.salesforce
            specs.append(FieldSpec(name, SF_TYPES[entry.type], external_id=key, unique=key))
    return tuple(specs)

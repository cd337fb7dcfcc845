"""The field mapping: which member fields each CRM carries, and which edits flow back.

The mapping is configuration (``crm_mapping.yaml`` beside this module, or the file in
``CRM_MAPPING_FILE``). It is checked when loaded, so a typo stops start-up with the file
and line instead of failing every push later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from crm_sync.errors import MappingError
from crm_sync.values import MEMBER_FIELDS

__all__ = [
    "CRMS",
    "DEFAULT_MAPPING_FILE",
    "Crm",
    "FieldMap",
    "JourneyProperty",
    "Mapping",
    "load_mapping",
]

Crm = Literal["hubspot", "salesforce"]
CRMS: tuple[Crm, ...] = ("hubspot", "salesforce")
ValueType = Literal["string", "number", "datetime", "bool"]
TYPES = ("string", "number", "datetime", "bool")
Owner = Literal["loyalty", "crm"]

DEFAULT_MAPPING_FILE = Path(__file__).with_name("crm_mapping.yaml")

#: Standard HubSpot contact properties a mapping may name; custom ones start with `loyalty_`.
HUBSPOT_STANDARD = frozenset(
    {
        "email",
        "firstname",
        "lastname",
        "phone",
        "mobilephone",
        "date_of_birth",
        "city",
        "country",
        "zip",
        "address",
        "state",
        "company",
        "jobtitle",
        "hs_language",
        "hs_timezone",
        "lifecyclestage",
    }
)
#: Standard Salesforce Contact fields a mapping may name; custom ones end in `__c`.
SALESFORCE_STANDARD = frozenset(
    {
        "Email",
        "FirstName",
        "LastName",
        "Phone",
        "MobilePhone",
        "Birthdate",
        "HasOptedOutOfEmail",
        "MailingCity",
        "MailingCountry",
        "MailingPostalCode",
        "MailingStreet",
        "Title",
    }
)
HUBSPOT_CUSTOM_PREFIX = "loyalty_"


@dataclass(frozen=True)
class FieldMap:
    """One member field and its names in each CRM."""

    field: str
    type: ValueType
    label: str
    hubspot: str | None
    salesforce: str | None
    key: bool = False
    pull: bool = False
    owner: Owner = "loyalty"
    line: int = 0

    def name_in(self, crm: Crm) -> str | None:
        return self.hubspot if crm == "hubspot" else self.salesforce


@dataclass(frozen=True)
class JourneyProperty:
    """An extra property journeys may set with `update_crm`."""

    name: str
    type: ValueType
    label: str
    hubspot: str | None
    salesforce: str | None
    line: int = 0

    def name_in(self, crm: Crm) -> str | None:
        return self.hubspot if crm == "hubspot" else self.salesforce


@dataclass(frozen=True)
class Mapping:
    fields: tuple[FieldMap, ...]
    journey_properties: tuple[JourneyProperty, ...]
    source: str

    @property
    def key(self) -> FieldMap:
        return next(f for f in self.fields if f.key)

    def pushed(self, crm: Crm) -> tuple[FieldMap, ...]:
        """The fields this CRM carries, the upsert key first."""
        mine = [f for f in self.fields if f.name_in(crm)]
        return tuple(sorted(mine, key=lambda f: not f.key))

    def pulled(self, crm: Crm) -> tuple[FieldMap, ...]:
        return tuple(f for f in self.fields if f.pull and f.name_in(crm))

    def property_name(self, crm: Crm, name: str) -> tuple[str, ValueType] | None:
        """The CRM's name and type for a journey's property name, or None when unknown.

        Journeys name properties as HubSpot does (`loyalty_tier`); mapped fields and
        declared journey properties are both accepted.
        """
        for extra in self.journey_properties:
            if name in (extra.name, extra.hubspot, extra.salesforce):
                crm_name = extra.name_in(crm)
                return (crm_name, extra.type) if crm_name else None
        for mapped in self.fields:
            if name in (mapped.hubspot, mapped.salesforce, mapped.field):
                crm_name = mapped.name_in(crm)
                return (crm_name, mapped.type) if crm_name else None
        return None

    def knows(self, name: str) -> bool:
        """Whether any CRM carries a property of this name."""
        entries: list[FieldMap | JourneyProperty] = [*self.fields, *self.journey_properties]
        return any(name in (e.hubspot, e.salesforce) for e in entries) or any(
            name == f.field for f in self.fields
        )


class _LineLoader(yaml.SafeLoader):
    """Keeps each mapping's 1-based line under the key `__line__`."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    data = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    data["__line__"] = node.start_mark.line + 1
    return data


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def load_mapping(path: Path | None = None) -> Mapping:
    """Read and check a mapping file; raises MappingError naming the file and line."""
    path = path or DEFAULT_MAPPING_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the CRM mapping ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("fields"), list):
        raise MappingError(f"{path}:1: expected a `fields:` list")
    fields = tuple(_field(path, item) for item in data["fields"])
    extras = tuple(_extra(path, item) for item in data.get("journey_properties") or [])
    mapping = Mapping(fields, extras, str(path))
    _check_whole(path, mapping)
    return mapping


def _where(path: Path, item: Any) -> str:
    line = item.get("__line__", 1) if isinstance(item, dict) else 1
    return f"{path}:{line}"


def _type(path: Path, item: dict[str, Any]) -> ValueType:
    value = item.get("type", "string")
    if value not in TYPES:
        raise MappingError(f"{_where(path, item)}: unknown type {value!r}; use one of {TYPES}")
    return value  # type: ignore[no-any-return]


def _crm_names(path: Path, item: dict[str, Any]) -> tuple[str | None, str | None]:
    hubspot, salesforce = item.get("hubspot"), item.get("salesforce")
    if hubspot is not None and (
        not isinstance(hubspot, str)
        or not (hubspot in HUBSPOT_STANDARD or hubspot.startswith(HUBSPOT_CUSTOM_PREFIX))
    ):
        raise MappingError(
            f"{_where(path, item)}: unknown HubSpot property {hubspot!r}; name a standard "
            f"contact property or a custom one starting with {HUBSPOT_CUSTOM_PREFIX!r}"
        )
    if salesforce is not None and (
        not isinstance(salesforce, str)
        or not (salesforce in SALESFORCE_STANDARD or salesforce.endswith("__c"))
    ):
        raise MappingError(
            f"{_where(path, item)}: unknown Salesforce field {salesforce!r}; name a standard "
            "Contact field or a custom one ending in '__c'"
        )
    if hubspot is None and salesforce is None:
        raise MappingError(f"{_where(path, item)}: name a `hubspot` or `salesforce` property")
    return hubspot, salesforce


def _field(path: Path, item: Any) -> FieldMap:
    if not isinstance(item, dict) or "field" not in item:
        raise MappingError(f"{_where(path, item)}: each entry needs `field:`")
    name = item["field"]
    if name not in MEMBER_FIELDS:
        raise MappingError(
            f"{_where(path, item)}: unknown member field {name!r}; "
            f"known: {', '.join(sorted(MEMBER_FIELDS))}"
        )
    owner = item.get("owner", "loyalty")
    if owner not in ("loyalty", "crm"):
        raise MappingError(f"{_where(path, item)}: owner must be loyalty or crm, not {owner!r}")
    hubspot, salesforce = _crm_names(path, item)
    pull = bool(item.get("pull", False))
    if pull and name not in PULLABLE:
        raise MappingError(
            f"{_where(path, item)}: {name!r} cannot flow back; pullable: {', '.join(PULLABLE)}"
        )
    return FieldMap(
        field=name,
        type=_type(path, item),
        label=str(item.get("label") or name.replace("_", " ").capitalize()),
        hubspot=hubspot,
        salesforce=salesforce,
        key=bool(item.get("key", False)),
        pull=pull,
        owner=owner,
        line=int(item["__line__"]),
    )


def _extra(path: Path, item: Any) -> JourneyProperty:
    if not isinstance(item, dict) or not item.get("name"):
        raise MappingError(f"{_where(path, item)}: each journey property needs `name:`")
    hubspot, salesforce = _crm_names(path, item)
    return JourneyProperty(
        name=str(item["name"]),
        type=_type(path, item),
        label=str(item.get("label") or item["name"]),
        hubspot=hubspot,
        salesforce=salesforce,
        line=int(item["__line__"]),
    )


def _check_whole(path: Path, mapping: Mapping) -> None:
    keys = [f for f in mapping.fields if f.key]
    if len(keys) != 1:
        raise MappingError(f"{path}: exactly one field must be the upsert key (`key: true`)")
    if not (keys[0].hubspot and keys[0].salesforce):
        raise MappingError(f"{path}:{keys[0].line}: the upsert key needs both CRM names")
    for crm in CRMS:
        seen: dict[str, int] = {}
        entries: list[FieldMap | JourneyProperty] = [*mapping.fields, *mapping.journey_properties]
        for entry in entries:
            name = entry.name_in(crm)
            if name is None:
                continue
            if name in seen:
                raise MappingError(
                    f"{path}:{entry.line}: {crm} property {name!r} is mapped twice "
                    f"(first at line {seen[name]})"
                )
            seen[name] = entry.line


#: Member fields a CRM edit may change.
PULLABLE = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "birthday",
    "email_consent",
    "sms_consent",
)

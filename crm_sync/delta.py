"""What a CRM should hold for a member, as plain strings, and its hash.

Values are reduced to one canonical text per property before hashing, so that a
member whose mapped values did not change hashes the same on every run and is not
pushed again. The adapters turn these texts into their wire types.

A push compares every member's hash on each run, so the compare is built for bulk:
`PropsCodec` compiles a mapping once (names, converters), and the hash writes the same
text as `json.dumps(props, sort_keys=True, separators=(",", ":"))` without its per-call
encoder set-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from hashlib import sha256
from json.encoder import encode_basestring_ascii
from typing import Any

from crm_sync.mapping import Crm, ValueType
from crm_sync.mapping import Mapping as CrmMapping

__all__ = ["ERASED", "Props", "PropsCodec", "canonical", "crm_props", "props_hash"]

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


def crm_props(mapping: CrmMapping, crm: Crm, values: dict[str, Any]) -> Props:
    """The properties this CRM should hold for one member (`member_values` row)."""
    props: Props = {}
    for mapped in mapping.pushed(crm):
        name = mapped.name_in(crm)
        assert name is not None
        props[name] = canonical(mapped.type, values.get(mapped.field))
    return props


def props_hash(props: Props) -> str:
    """A stable digest of the properties, stored on the member's CRM link.

    The SHA-256 of the properties as compact JSON with sorted keys (ASCII-escaped).
    """
    parts = [
        f"{encode_basestring_ascii(name)}:"
        f"{'null' if value is None else encode_basestring_ascii(value)}"
        for name, value in sorted(props.items())
    ]
    text = "{" + ",".join(parts) + "}"
    return sha256(text.encode("ascii")).hexdigest()


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if type(value) is str else str(value)


def _number(value: Any) -> str | None:
    if type(value) is int:  # most numbers: no Decimal round trip
        return str(value)
    return canonical("number", value)


def _converter(kind: ValueType) -> Callable[[Any], str | None]:
    if kind == "string":
        return _text
    if kind == "number":
        return _number
    return partial(canonical, kind)


def _json(kind: ValueType, value: Any) -> str:
    """A value's canonical text as JSON (`null` when empty)."""
    text = canonical(kind, value)
    return "null" if text is None else encode_basestring_ascii(text)


_BOOLS = {True: '"true"', False: '"false"', None: "null"}


def _json_column(kind: ValueType, values: Iterable[Any]) -> list[str]:
    """`_json` of a column of values, with the common types converted inline."""
    enc = encode_basestring_ascii
    if kind == "string":
        return [
            "null" if v is None or v == "" else enc(v if v.__class__ is str else str(v))
            for v in values
        ]
    if kind == "number":
        return [f'"{v}"' if v.__class__ is int else _json(kind, v) for v in values]
    if kind == "bool":
        return [_BOOLS[v] if v is None or v.__class__ is bool else _json(kind, v) for v in values]
    return ["null" if v is None else _json(kind, v) for v in values]


class PropsCodec:
    """One CRM's mapped properties, compiled once per run: `crm_props` and `props_hash`
    for many members without looking the mapping up again for each."""

    def __init__(self, mapping: CrmMapping, crm: Crm) -> None:
        self._fields: list[tuple[str, str, Callable[[Any], str | None]]] = []
        kinds: list[tuple[str, str, ValueType]] = []
        for mapped in mapping.pushed(crm):
            name = mapped.name_in(crm)
            assert name is not None
            self._fields.append((name, mapped.field, _converter(mapped.type)))
            kinds.append((name, mapped.field, mapped.type))
        ordered = sorted(kinds)
        #: The member fields read, in the properties' sorted order, with their types.
        self._sorted = [(field, kind) for _, field, kind in ordered]
        self._template = "{" + ",".join(
            f"{encode_basestring_ascii(n).replace('%', '%%')}:%s" for n, _, _ in ordered
        )
        self._template += "}"

    @property
    def fields(self) -> set[str]:
        """The member fields these properties are made of."""
        return {field for _, field, _ in self._fields}

    def props(self, values: dict[str, Any]) -> Props:
        """As `crm_props`: the properties this CRM should hold for one member."""
        return {name: convert(values.get(field)) for name, field, convert in self._fields}

    def digests(self, columns: Mapping[str, Sequence[Any]]) -> list[str]:
        """`props_hash(self.props(values))` of many members, from their values by field
        (`member_columns`), converted a field at a time."""
        texts = [_json_column(kind, columns[field]) for field, kind in self._sorted]
        template = self._template
        return [
            sha256((template % one).encode("ascii")).hexdigest() for one in zip(*texts, strict=True)
        ]

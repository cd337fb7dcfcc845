"""Salesforce Contact records: fields, validation, upsert by external id, SOQL."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["FieldSpec", "SalesforceStore", "SfError", "default_custom_fields", "sf_datetime"]

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class SfError(Exception):
    """A whole-request Salesforce error: HTTP status, errorCode, message."""

    def __init__(self, status: int, code: str, message: str, fields: list[str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


@dataclass(frozen=True)
class FieldSpec:
    """One Contact field as describe() reports it."""

    name: str
    type: str = "string"
    label: str = ""
    length: int = 255
    external_id: bool = False
    unique: bool = False
    nillable: bool = True
    createable: bool = True
    updateable: bool = True

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or self.name.removesuffix("__c").replace("_", " "),
            "type": self.type,
            "length": self.length if self.type in ("string", "email", "phone") else 0,
            "custom": self.custom,
            "externalId": self.external_id,
            "unique": self.unique,
            "idLookup": self.external_id or self.name in ("Id", "Email"),
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "filterable": True,
            "sortable": True,
            "defaultedOnCreate": not self.nillable and not self.createable,
        }


STANDARD_FIELDS = (
    FieldSpec("Id", "id", "Contact ID", 18, nillable=False, createable=False, updateable=False),
    FieldSpec("FirstName", label="First Name", length=40),
    FieldSpec("LastName", label="Last Name", length=80, nillable=False),
    FieldSpec("Email", "email", "Email", 80),
    FieldSpec("Phone", "phone", "Business Phone", 40),
    FieldSpec("MobilePhone", "phone", "Mobile Phone", 40),
    FieldSpec("HasOptedOutOfEmail", "boolean", "Email Opt Out", nillable=False),
    FieldSpec("IsDeleted", "boolean", "Deleted", createable=False, updateable=False),
    FieldSpec("CreatedDate", "datetime", "Created Date", createable=False, updateable=False),
    FieldSpec("LastModifiedDate", "datetime", "Last Modified", createable=False, updateable=False),
    FieldSpec("SystemModstamp", "datetime", "System Modstamp", createable=False, updateable=False),
)


def default_custom_fields() -> tuple[FieldSpec, ...]:
    return (
        FieldSpec("Loyalty_Member_Id__c", label="Loyalty Member Id", external_id=True, unique=True),
        FieldSpec("Loyalty_Points__c", "double", "Loyalty Points"),
        FieldSpec("Loyalty_Tier__c", label="Loyalty Tier", length=40),
    )


def sf_datetime(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}+0000"
    )


def parse_sf_datetime(text: str) -> datetime:
    text = text.strip().replace("Z", "+00:00")
    text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record_id(prefix: str, n: int) -> str:
    """An 18-character Salesforce id (15 + case-safe checksum)."""
    digits = ""
    for _ in range(15 - len(prefix)):
        n, r = divmod(n, 62)
        digits = _BASE62[r] + digits
    base = prefix + digits
    suffix = ""
    for chunk in (base[0:5], base[5:10], base[10:15]):
        bits = sum(1 << i for i, c in enumerate(chunk) if c.isupper())
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return base + suffix


class SalesforceStore:
    """Contacts of one org; callers hold the emulator lock."""

    def __init__(self, custom_fields: tuple[FieldSpec, ...]) -> None:
        self.fields = {f.name: f for f in (*STANDARD_FIELDS, *custom_fields)}
        self.records: dict[str, dict[str, Any]] = {}
        #: External-id field -> value -> record ids, so upserts do not scan every record.
        self._index: dict[str, dict[str, set[str]]] = {
            f.name: {} for f in self.fields.values() if f.external_id
        }
        self._ids = itertools.count(1)
        self._last_stamp = datetime(2000, 1, 1, tzinfo=UTC)

    def _stamp(self) -> datetime:
        """Strictly increasing modification stamps, so SystemModstamp orders writes."""
        now = datetime.now(UTC).replace(microsecond=datetime.now(UTC).microsecond // 1000 * 1000)
        if now <= self._last_stamp:
            now = self._last_stamp + timedelta(milliseconds=1)
        self._last_stamp = now
        return now

    def check_columns(self, names: list[str]) -> None:
        unknown = [n for n in names if n != "attributes" and n not in self.fields]
        if unknown:
            raise SfError(
                400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type Contact"
            )

    def external_field(self, name: str) -> FieldSpec:
        spec = self.fields.get(name)
        if spec is None or not (spec.external_id or name == "Id"):
            msg = f"Provided external ID field does not exist or is not accessible: {name}"
            raise SfError(404, "NOT_FOUND", msg)
        return spec

    def record_errors(self, values: dict[str, Any], creating: bool) -> list[dict[str, Any]]:
        """Per-record errors in the `{statusCode, message, fields}` shape."""
        errors = []
        if creating and not values.get("LastName"):
            errors.append(
                _rec_err(
                    "REQUIRED_FIELD_MISSING",
                    "Required fields are missing: [LastName]",
                    ["LastName"],
                )
            )
        for name, value in values.items():
            spec = self.fields[name]
            if value is None or value == "":
                continue
            if not (spec.createable if creating else spec.updateable) and name != "Id":
                msg = (
                    f"Unable to create/update fields: {name}. Please check the security "
                    "settings of this field and verify that it is read/write for your profile "
                    "or permission set."
                )
                errors.append(_rec_err("INVALID_FIELD_FOR_INSERT_UPDATE", msg, [name]))
            elif spec.type == "email" and not EMAIL_RE.match(str(value)):
                msg = f"{spec.describe()['label']}: invalid email address: {value}"
                errors.append(_rec_err("INVALID_EMAIL_ADDRESS", msg, [name]))
            elif not _fits_type(spec.type, value):
                msg = f"{spec.describe()['label']}: value not of required type: {value}"
                errors.append(_rec_err("INVALID_TYPE_ON_FIELD_IN_RECORD", msg, [name]))
            elif spec.type in ("string", "email", "phone") and len(str(value)) > spec.length:
                label = spec.describe()["label"]
                msg = f"{label}: data value too large: {value} (max length={spec.length})"
                errors.append(_rec_err("STRING_TOO_LONG", msg, [name]))
        return errors

    def matches(self, field: str, value: str) -> list[str]:
        if field == "Id":
            return [value] if value in self.records else []
        if field in self._index:
            return sorted(self._index[field].get(str(value), ()))
        return [rid for rid, rec in self.records.items() if str(rec.get(field)) == str(value)]

    def plan_upsert(
        self, field: str, value: Any, values: dict[str, Any]
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """(existing id or None, per-record errors) without writing anything."""
        if value in (None, ""):
            return None, [
                _rec_err("MISSING_ARGUMENT", f"Upsert requires a value for {field}", [field])
            ]
        found = self.matches(field, str(value))
        if len(found) > 1:
            msg = f"{field}: more than one record found for external id field: {found}"
            return None, [_rec_err("DUPLICATE_EXTERNAL_ID", msg, [field])]
        if not found and field == "Id":
            return None, [
                _rec_err(
                    "NOT_FOUND",
                    "Provided external ID field does not exist or is not accessible: Id",
                    ["Id"],
                )
            ]
        existing = found[0] if found else None
        return existing, self.record_errors({**values, field: value}, creating=existing is None)

    def write(self, existing: str | None, values: dict[str, Any]) -> tuple[str, bool]:
        """Create or update a Contact, returning (id, created)."""
        stamp = sf_datetime(self._stamp())
        converted = {
            k: self._convert(k, v) for k, v in values.items() if k not in ("attributes", "Id")
        }
        if existing is None:
            rid = record_id("003", next(self._ids))
            record: dict[str, Any] = dict.fromkeys(self.fields)
            record.update(Id=rid, IsDeleted=False, HasOptedOutOfEmail=False, CreatedDate=stamp)
            self.records[rid] = record
        else:
            rid, record = existing, self.records[existing]
        for name, ids in self._index.items():
            if name in converted:
                if record.get(name) is not None:
                    ids.get(str(record[name]), set()).discard(rid)
                if converted[name] is not None:
                    ids.setdefault(str(converted[name]), set()).add(rid)
        record.update(converted)
        record.update(LastModifiedDate=stamp, SystemModstamp=stamp)
        return rid, existing is None

    def _convert(self, name: str, value: Any) -> Any:
        kind = self.fields[name].type
        if value is None or value == "":
            return None
        if kind == "double":
            return float(value)
        if kind == "boolean":
            return value if isinstance(value, bool) else str(value).lower() == "true"
        return value


def _rec_err(code: str, message: str, fields: list[str]) -> dict[str, Any]:
    return {"statusCode": code, "message": message, "fields": fields}


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _fits_type(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return str(value).lower() in ("true", "false")
    if kind == "double":
        return _is_number(value)
    return True

"""Turning one input row into clean member fields, or field-by-field errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import available_timezones

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from loyalty.errors import RowError

__all__ = ["KNOWN_COLUMNS", "MemberRow", "parse_birthday", "parse_row"]

KNOWN_COLUMNS = (
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "time_zone",
    "birthday",
    "email_consent",
    "sms_consent",
    "referred_by_code",
)
_LOCALE = re.compile(r"^([a-zA-Z]{2,3})(?:[-_]([a-zA-Z]{2}))?$")
_TRUE = {"true", "yes", "y", "1", "granted", "opt-in", "subscribed"}
_FALSE = {"false", "no", "n", "0", "revoked", "denied", "opt-out", "unsubscribed"}
_ZONES = frozenset(available_timezones())


@dataclass
class MemberRow:
    """The clean fields of one row; `present` lists the columns the file carried."""

    external_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    email_consent: bool | None = None
    sms_consent: bool | None = None
    referred_by_code: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_birthday(value: str) -> tuple[int | None, int, int]:
    """`YYYY-MM-DD` or `--MM-DD` → (year or None, month, day); 29 February is accepted."""
    text = value.strip()
    if text.startswith("--"):
        match = re.fullmatch(r"--(\d{2})-(\d{2})", text)
        if not match:
            raise ValueError("expected YYYY-MM-DD or --MM-DD")
        month, day = int(match[1]), int(match[2])
        date(2000, month, day)  # 2000 is a leap year: --02-29 is valid
        return None, month, day
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError("expected YYYY-MM-DD or --MM-DD")
    parsed = date.fromisoformat(text)
    if parsed > date.today() or parsed.year < 1900:
        raise ValueError("expected a date between 1900 and today")
    return parsed.year, parsed.month, parsed.day


def _consent(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = _text(value)
    if text is None:
        return None
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise ValueError("expected true or false (yes/no, 1/0)")


def parse_row(raw: dict[str, Any], *, phone_region: str) -> MemberRow:
    """Validate one row. Raises ExceptionGroup of RowError, one per bad field."""
    errors: list[RowError] = []
    external_id = _text(raw.get("external_id"))
    if external_id is None:
        errors.append(RowError("external_id", "is required"))
    elif len(external_id) > 255:
        errors.append(RowError("external_id", "is longer than 255 characters"))
    row = MemberRow(external_id=external_id or "")
    fields = row.fields

    def check(name: str, parse: Any) -> None:
        if name not in raw:
            return
        value = _text(raw[name]) if not isinstance(raw[name], bool) else raw[name]
        try:
            parse(value)
        except (ValueError, EmailNotValidError, phonenumbers.NumberParseException) as exc:
            errors.append(RowError(name, f"{exc} (got {str(raw[name])[:80]!r})"))

    def email(value: str | None) -> None:
        fields["email"] = (
            None
            if value is None
            else validate_email(value, check_deliverability=False).normalized.lower()
        )

    def phone(value: str | None) -> None:
        if value is None:
            fields["phone"] = None
            return
        number = phonenumbers.parse(value, phone_region)
        if not phonenumbers.is_valid_number(number):
            raise ValueError(f"not a valid phone number for region {phone_region} or +prefix")
        fields["phone"] = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    def name(column: str) -> Any:
        def parse(value: str | None) -> None:
            if value is not None and len(value) > 255:
                raise ValueError("is longer than 255 characters")
            fields[column] = value

        return parse

    def locale(value: str | None) -> None:
        if value is None:
            fields["locale"] = None
            return
        match = _LOCALE.match(value)
        if not match:
            raise ValueError("expected a locale such as en, pl or pl-PL")
        region = f"-{match[2].upper()}" if match[2] else ""
        fields["locale"] = match[1].lower() + region

    def zone(value: str | None) -> None:
        if value is not None and value not in _ZONES:
            raise ValueError("expected an IANA time zone such as Europe/Warsaw")
        fields["time_zone"] = value

    def birthday(value: str | None) -> None:
        year, month, day = (None, None, None) if value is None else parse_birthday(value)
        fields.update(birth_year=year, birth_month=month, birth_day=day)

    def consent(column: str) -> Any:
        def parse(value: Any) -> None:
            setattr(row, column, _consent(value))

        return parse

    def referred_by(value: str | None) -> None:
        row.referred_by_code = value.upper() if value else None

    check("email", email)
    check("phone", phone)
    check("first_name", name("first_name"))
    check("last_name", name("last_name"))
    check("locale", locale)
    check("time_zone", zone)
    check("birthday", birthday)
    check("email_consent", consent("email_consent"))
    check("sms_consent", consent("sms_consent"))
    check("referred_by_code", referred_by)
    for key, value in raw.items():
        if key in KNOWN_COLUMNS or key is None:
            continue
        if isinstance(value, str):
            value = value.strip()
            if not value:
                continue
        if value is not None:
            row.attributes[str(key)] = value
    if errors:
        raise ExceptionGroup("invalid row", errors)
    return row

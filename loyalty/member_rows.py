"""Turning one input row into clean member fields, field-by-field warnings, or errors.

Only `external_id` is required. A row is rejected when it has no usable external_id
or when a cell is corrupt: not UTF-8, a NUL character, far too long, a column name or
JSON value no database would store. Any other field that fails validation is left out
and reported as a warning, and the member is imported without it.

Reasons never quote a personal value (email, phone, names, birthday).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import available_timezones

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from loyalty.errors import RowError
from loyalty.phone_numbers import normal_phone

__all__ = [
    "FIELD_ERRORS",
    "KNOWN_COLUMNS",
    "MAX_CELL",
    "MemberRow",
    "ParsedRow",
    "consent_value",
    "locale_value",
    "member_row",
    "name_value",
    "named_cells",
    "normal_email",
    "normal_phone",
    "parse_birthday",
    "parse_row",
    "parse_rows",
    "referral_code_value",
    "row_key",
    "unusable_text",
    "zone_value",
]

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
#: Columns whose values are personal data: a reason never quotes them.
PERSONAL_COLUMNS = frozenset({"email", "phone", "first_name", "last_name", "birthday"})
#: Characters one cell (or one attribute value, as JSON) may hold; more rejects the row.
MAX_CELL = 64 * 1024
#: Characters in a column name (an attribute key).
MAX_COLUMN_NAME = 255
#: Nesting of a JSON attribute value (objects and arrays within each other).
MAX_DEPTH = 32
_LOCALE = re.compile(r"^([a-zA-Z]{2,3})(?:[-_]([a-zA-Z]{2}))?$")
_TRUE = {"true", "yes", "y", "1", "granted", "opt-in", "subscribed"}
_FALSE = {"false", "no", "n", "0", "revoked", "denied", "opt-out", "unsubscribed"}
_CONSENT_WORDS = dict.fromkeys(_TRUE, True) | dict.fromkeys(_FALSE, False)
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DAY_OF_YEAR = re.compile(r"--(\d{2})-(\d{2})")
#: Birthdays and locales already parsed, in this process: most files repeat them. A
#: birthday is kept only once valid (a date before today stays so).
_BIRTHDAYS: dict[str, tuple[int | None, int, int]] = {}
_LOCALES: dict[str, str] = {}
_MAX_REMEMBERED = 100_000
_ZONES = frozenset(available_timezones())
# Undecodable bytes arrive as lone surrogates (errors="surrogateescape"), and a JSON
# "\ud800" escape makes one too: neither can be stored as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
_REFERRAL_CODE_LENGTH = 32
#: Domains email-validator accepted as written, in this process (`normal_email`).
_VALID_DOMAINS: set[str] = set()
_MAX_DOMAINS = 100_000
# A subset of the dot-atom local parts email-validator accepts, and its length limits.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")
_MAX_LOCAL = 64
_MAX_ADDRESS = 254


@dataclass
class MemberRow:
    """The clean fields of one row; `fields` holds only the columns to write."""

    external_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    email_consent: bool | None = None
    sms_consent: bool | None = None
    referred_by_code: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    #: Optional fields left out because their value was invalid.
    warnings: list[RowError] = field(default_factory=list)


def unusable_text(text: str, limit: int = MAX_CELL) -> str | None:
    """Why a text cannot be stored (not UTF-8, NUL, longer than `limit`), or None."""
    if _SURROGATE.search(text):
        return "is not UTF-8 text (save the file as UTF-8)"
    if "\x00" in text:
        return "contains a NUL character"
    if len(text) > limit:
        return f"is longer than {limit} characters"
    return None


def _unusable_json(value: Any, depth: int = 0) -> str | None:
    """Why a JSON value cannot be stored as an attribute, or None."""
    if isinstance(value, str):
        return unusable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            return f"is nested more than {MAX_DEPTH} levels deep"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            reason = unusable_text(key, MAX_COLUMN_NAME) if isinstance(key, str) else None
            if reason is not None:
                return f"has a key that {reason}"
            reason = _unusable_json(item, depth + 1)
            if reason is not None:
                return reason
        if depth == 0 and len(json.dumps(value)) > MAX_CELL:
            return f"is longer than {MAX_CELL} characters as JSON"
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise ValueError("expected text, not a JSON object or array")
    text = str(value).strip()
    return text or None


def row_key(external_id: Any) -> str | None:
    """A row's external_id when it is usable text (to name the row in a report)."""
    try:
        key = _text(external_id)
    except ValueError:
        return None
    if key is None or unusable_text(key, 255):
        return None
    return key


def parse_birthday(value: str) -> tuple[int | None, int, int]:
    """`YYYY-MM-DD` or `--MM-DD` → (year or None, month, day); 29 February is accepted."""
    text = value.strip()
    known = _BIRTHDAYS.get(text)
    if known is not None:
        return known
    if text.startswith("--"):
        match = _DAY_OF_YEAR.fullmatch(text)
        if not match:
            raise ValueError("expected YYYY-MM-DD or --MM-DD")
        month, day = int(match[1]), int(match[2])
        date(2000, month, day)  # 2000 is a leap year: --02-29 is valid
        birthday: tuple[int | None, int, int] = (None, month, day)
    else:
        if not _FULL_DATE.fullmatch(text):
            raise ValueError("expected YYYY-MM-DD or --MM-DD")
        parsed = date.fromisoformat(text)
        if parsed > date.today() or parsed.year < 1900:
            raise ValueError("expected a date between 1900 and today")
        birthday = (parsed.year, parsed.month, parsed.day)
    if len(_BIRTHDAYS) < _MAX_REMEMBERED:
        _BIRTHDAYS[text] = birthday
    return birthday


def normal_email(value: str) -> str:
    """The address as stored (lowercase), or EmailNotValidError.

    email-validator takes most of a row's parsing time, mostly on the domain. An
    address with a plain dot-atom local part at a domain it has already accepted
    as written is valid for the same reasons, so it needs no second look.
    """
    local, _, domain = value.rpartition("@")
    domain = domain.lower()
    if (
        domain in _VALID_DOMAINS
        and len(local) <= _MAX_LOCAL
        and len(value) <= _MAX_ADDRESS
        and _PLAIN_LOCAL.fullmatch(local)
    ):
        return f"{local.lower()}@{domain}"
    address = validate_email(value, check_deliverability=False).normalized.lower()
    if (
        domain.isascii()
        and address.rpartition("@")[2] == domain
        and len(_VALID_DOMAINS) < _MAX_DOMAINS
    ):
        _VALID_DOMAINS.add(domain)
    return address


def _consent(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = _text(value)
    return None if text is None else consent_value(text)


def _corrupt_cells(raw: dict[str, Any]) -> tuple[list[RowError], set[str]]:
    """Cells no database would store: each rejects the row."""
    if _plain_cells(raw):
        return [], set()
    errors: list[RowError] = []
    bad: set[str] = set()
    for key, value in raw.items():
        if key is None:
            continue
        reason = unusable_text(str(key), MAX_COLUMN_NAME)
        if reason is not None:
            errors.append(RowError("*", f"has a column name that {reason}"))
            bad.add(key)
            continue
        reason = _unusable_json(value)
        if reason is not None:
            errors.append(RowError(key, reason))
            bad.add(key)
    return errors, bad


def _plain_cells(raw: dict[str, Any]) -> bool:
    """Whether every key and value is short text with nothing unstorable, in one look.

    A row with other values (missing cells, numbers, JSON) or long text is looked at
    cell by cell.
    """
    try:
        keys = "".join(raw)
        values = "".join(raw.values())
    except TypeError:
        return False
    if len(values) > MAX_CELL or len(keys) > MAX_COLUMN_NAME:
        return False
    text = keys + values
    return "\x00" not in text and _SURROGATE.search(text) is None


def _reason(name: str, exc: Exception, raw: Any) -> str:
    reason = str(exc)
    if name not in PERSONAL_COLUMNS:
        return f"{reason} (got {str(raw)[:80]!r})"
    if name == "email":
        # The validator's parenthesised details may quote parts of the address.
        reason = re.sub(r"\s*\([^)]*\)", "", reason)
    text = str(raw).strip()
    return reason.replace(text, "…") if text else reason


def name_value(value: str) -> str:
    """A first or last name as stored, or ValueError."""
    if len(value) > 255:
        raise ValueError("is longer than 255 characters")
    return value


def locale_value(value: str) -> str:
    """A locale as stored (`pl`, `pl-PL`), or ValueError."""
    locale = _LOCALES.get(value)
    if locale is None:
        match = _LOCALE.match(value)
        if not match:
            raise ValueError("expected a locale such as en, pl or pl-PL")
        region = f"-{match[2].upper()}" if match[2] else ""
        locale = match[1].lower() + region
        if len(_LOCALES) < _MAX_REMEMBERED:
            _LOCALES[value] = locale
    return locale


def zone_value(value: str) -> str:
    """An IANA time zone as stored, or ValueError."""
    if value not in _ZONES:
        raise ValueError("expected an IANA time zone such as Europe/Warsaw")
    return value


def consent_value(value: str) -> bool:
    """A consent cell's word (stripped, not empty) as granted or not, or ValueError."""
    consent = _CONSENT_WORDS.get(value.lower())
    if consent is None:
        raise ValueError("expected true or false (yes/no, 1/0)")
    return consent


def referral_code_value(value: str) -> str:
    """A referrer's code as looked up, or ValueError."""
    if len(value) > _REFERRAL_CODE_LENGTH:
        raise ValueError(f"is longer than {_REFERRAL_CODE_LENGTH} characters")
    return value.upper()


def _email(row: MemberRow, value: str | None, _: str) -> None:
    row.fields["email"] = None if value is None else normal_email(value)


def _phone(row: MemberRow, value: str | None, region: str) -> None:
    row.fields["phone"] = None if value is None else normal_phone(value, region)


def _name(column: str) -> Callable[[MemberRow, Any, str], None]:
    def parse(row: MemberRow, value: str | None, _: str) -> None:
        row.fields[column] = None if value is None else name_value(value)

    return parse


def _locale(row: MemberRow, value: str | None, _: str) -> None:
    row.fields["locale"] = None if value is None else locale_value(value)


def _zone(row: MemberRow, value: str | None, _: str) -> None:
    row.fields["time_zone"] = None if value is None else zone_value(value)


def _birthday(row: MemberRow, value: str | None, _: str) -> None:
    year, month, day = (None, None, None) if value is None else parse_birthday(value)
    row.fields.update(birth_year=year, birth_month=month, birth_day=day)


def _email_consent(row: MemberRow, value: Any, _: str) -> None:
    row.email_consent = _consent(value)


def _sms_consent(row: MemberRow, value: Any, _: str) -> None:
    row.sms_consent = _consent(value)


def _referred_by(row: MemberRow, value: str | None, _: str) -> None:
    row.referred_by_code = None if value is None else referral_code_value(value)


#: The known optional columns, in the order their warnings are reported, and their parsers.
_FIELD_PARSERS: tuple[tuple[str, Callable[[MemberRow, Any, str], None]], ...] = (
    ("email", _email),
    ("phone", _phone),
    ("first_name", _name("first_name")),
    ("last_name", _name("last_name")),
    ("locale", _locale),
    ("time_zone", _zone),
    ("birthday", _birthday),
    ("email_consent", _email_consent),
    ("sms_consent", _sms_consent),
    ("referred_by_code", _referred_by),
)
_KNOWN = frozenset(KNOWN_COLUMNS)
#: Fields a JSON line may give as true or false.
_YES_NO = frozenset({"email_consent", "sms_consent"})
#: What a field's value may fail with (a warning, the field left out).
FIELD_ERRORS = (ValueError, EmailNotValidError, phonenumbers.NumberParseException)


def parse_row(raw: dict[str, Any], *, phone_region: str) -> MemberRow:
    """Validate one row; raises ExceptionGroup of RowError when the row is rejected.

    Invalid optional fields are left out of the row and listed in `warnings`.
    """
    errors, corrupt = _corrupt_cells(raw)
    external_id: str | None = None
    if "external_id" not in corrupt:
        try:
            external_id = _text(raw.get("external_id"))
        except ValueError as exc:
            errors.append(RowError("external_id", str(exc)))
        else:
            if external_id is None:
                errors.append(RowError("external_id", "is required"))
            elif len(external_id) > 255:
                errors.append(RowError("external_id", "is longer than 255 characters"))
    row = MemberRow(external_id=external_id or "")
    for name, parse in _FIELD_PARSERS:
        if name not in raw or name in corrupt:
            continue
        cell = raw[name]
        try:
            if type(cell) is str:
                value: Any = cell.strip() or None
            elif isinstance(cell, bool):
                if name not in _YES_NO:
                    raise ValueError(f"expected text, not {str(cell).lower()}")
                value = cell
            else:
                value = _text(cell)
            parse(row, value, phone_region)
        except FIELD_ERRORS as exc:
            row.warnings.append(RowError(name, _reason(name, exc, cell)))
    attributes = row.attributes
    for key, value in raw.items():
        if key in _KNOWN or key is None or key in corrupt:
            continue
        if type(value) is str:
            value = value.strip()
            if not value:
                continue
        if value is not None:
            attributes[str(key)] = value
    if errors:
        raise ExceptionGroup("invalid row", [*errors, *row.warnings])
    return row


#: What `parse_rows` made of one row, as plain data (cheap to send between processes):
#: its number, its external_id when usable text (to name it in a report), the
#: `MemberRow` fields in `member_row`'s order (None when rejected), the (field, reason)
#: pairs that reject the row, and the warnings of a kept row.
ParsedRow = tuple[
    int,
    str | None,
    tuple[str, dict[str, Any], bool | None, bool | None, str | None, dict[str, Any]] | None,
    list[tuple[str, str]],
    list[tuple[str, str]],
]


def member_row(fields: tuple[Any, ...]) -> MemberRow:
    """The `MemberRow` a `ParsedRow` carries."""
    return MemberRow(*fields)


def named_cells(names: list[str], cells: list[str]) -> dict[str, Any]:
    """A CSV line's cells by the header's names, as csv.DictReader gives them: a later
    column of the same name wins, and missing cells are None."""
    raw: dict[str, Any] = dict(zip(names, cells, strict=False))
    for missing in names[len(cells) :]:
        raw[missing] = None
    return raw


def parse_rows(
    rows: list[tuple[int, dict[str, Any] | list[str]]],
    phone_region: str,
    names: list[str] | None = None,
) -> list[ParsedRow]:
    """`parse_row` over numbered rows, in order; runs in a parsing process.

    A row is a JSON object or the cells of a CSV line, which `names` names.
    """
    parsed: list[ParsedRow] = []
    for number, cells in rows:
        raw = cells if isinstance(cells, dict) else named_cells(names or [], cells)
        try:
            row = parse_row(raw, phone_region=phone_region)
        except ExceptionGroup as group:
            errors = [(e.field, e.reason) for e in group.exceptions if isinstance(e, RowError)]
            parsed.append((number, row_key(raw.get("external_id")), None, errors, []))
            continue
        warnings = [(w.field, w.reason) for w in row.warnings]
        fields = (
            row.external_id,
            row.fields,
            row.email_consent,
            row.sms_consent,
            row.referred_by_code,
            row.attributes,
        )
        parsed.append((number, row.external_id, fields, [], warnings))
    return parsed

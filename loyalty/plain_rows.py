"""The common CSV row parsed in one pass: plain text cells whose fields are all valid.

Most rows of a member file are plain: every cell is text with nothing a database
refuses, there is a usable external_id, and every field is valid. Such a row is
parsed here with the header's positions worked out once per file and the value
rules of `loyalty.member_rows`; any other row (a missing or corrupt cell, a field
that fails) is left to `loyalty.member_rows.parse_row`, which reports it field by
field. What a row becomes is the same either way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from loyalty.member_rows import (
    FIELD_ERRORS,
    KNOWN_COLUMNS,
    MAX_CELL,
    MAX_COLUMN_NAME,
    consent_value,
    locale_value,
    name_value,
    normal_email,
    normal_phone,
    parse_birthday,
    referral_code_value,
    unusable_text,
    zone_value,
)

__all__ = ["CsvLayout", "csv_layout", "plain_row"]

#: Where no column of a name is.
ABSENT = -1
#: A kept row's `MemberRow` fields, in `loyalty.member_rows.member_row`'s order.
Fields = tuple[str, dict[str, Any], bool | None, bool | None, str | None, dict[str, Any]]


@dataclass(frozen=True)
class CsvLayout:
    """Where each known column's cell is in a CSV line (`ABSENT` when none), and the
    attribute columns (the others), as `loyalty.member_rows.named_cells` names them."""

    width: int
    external_id: int
    email: int
    phone: int
    first_name: int
    last_name: int
    locale: int
    time_zone: int
    birthday: int
    email_consent: int
    sms_consent: int
    referred_by_code: int
    #: Each other column's name and where its cell is, in the order of the names.
    attributes: tuple[tuple[str, int], ...]


@functools.lru_cache(maxsize=16)
def csv_layout(names: tuple[str, ...]) -> CsvLayout | None:
    """The header's layout; None when a column name is not plain text (its rows are then
    parsed cell by cell, to report it)."""
    if "external_id" not in names or any(
        unusable_text(name, MAX_COLUMN_NAME) is not None for name in names
    ):
        return None
    # A later column of the same name wins, where a dict of the cells keeps the first.
    at = {name: i for i, name in enumerate(names)}
    known = {name: at.get(name, ABSENT) for name in KNOWN_COLUMNS}
    attributes = tuple((name, i) for name, i in at.items() if name not in known)
    return CsvLayout(width=len(names), attributes=attributes, **known)


def plain_row(cells: list[str], layout: CsvLayout, region: str) -> Fields | None:
    """The row's fields when it is plain and all of them are valid, else None."""
    if len(cells) != layout.width:
        return None  # missing cells
    if unusable_text("".join(cells), MAX_CELL) is not None:
        return None  # a cell to look at on its own
    external_id = cells[layout.external_id].strip()
    if not external_id or len(external_id) > 255:
        return None
    fields: dict[str, Any] = {}
    email_consent = sms_consent = referred_by_code = None
    try:
        if (i := layout.email) >= 0:
            value = cells[i].strip()
            fields["email"] = normal_email(value) if value else None
        if (i := layout.phone) >= 0:
            value = cells[i].strip()
            fields["phone"] = normal_phone(value, region) if value else None
        if (i := layout.first_name) >= 0:
            value = cells[i].strip()
            fields["first_name"] = name_value(value) if value else None
        if (i := layout.last_name) >= 0:
            value = cells[i].strip()
            fields["last_name"] = name_value(value) if value else None
        if (i := layout.locale) >= 0:
            value = cells[i].strip()
            fields["locale"] = locale_value(value) if value else None
        if (i := layout.time_zone) >= 0:
            value = cells[i].strip()
            fields["time_zone"] = zone_value(value) if value else None
        if (i := layout.birthday) >= 0:
            value = cells[i].strip()
            year, month, day = parse_birthday(value) if value else (None, None, None)
            fields["birth_year"], fields["birth_month"], fields["birth_day"] = year, month, day
        if (i := layout.email_consent) >= 0:
            value = cells[i].strip()
            email_consent = consent_value(value) if value else None
        if (i := layout.sms_consent) >= 0:
            value = cells[i].strip()
            sms_consent = consent_value(value) if value else None
        if (i := layout.referred_by_code) >= 0:
            value = cells[i].strip()
            referred_by_code = referral_code_value(value) if value else None
    except FIELD_ERRORS:
        return None  # reported field by field
    attributes = {}
    for name, i in layout.attributes:
        value = cells[i].strip()
        if value:
            attributes[name] = value
    return external_id, fields, email_consent, sms_consent, referred_by_code, attributes

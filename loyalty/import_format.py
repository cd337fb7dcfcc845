"""A new member's columns as the database driver takes them, made where the row is parsed.

Most rows of a first import are new members, whose columns the row alone decides.
The parsing processes turn them into what the driver takes (typed values for
SQLite's executemany, a line of `COPY` text for PostgreSQL), so that the importing
process only adds the id, the referral code, the digest and the batch's time.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite

from loyalty.models import Member

__all__ = [
    "IMPORT_COLUMNS",
    "NEW_COLUMNS",
    "NULL",
    "WRITTEN_COLUMNS",
    "NewMember",
    "Writes",
    "bound_digest",
    "bound_stamp",
    "copy_text",
    "new_member",
]

#: The columns an import sets on a member it already has.
IMPORT_COLUMNS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "locale",
    "time_zone",
    "birth_year",
    "birth_month",
    "birth_day",
    "email_consent",
    "sms_consent",
    "attributes",
)
#: The columns of a new member that its row decides, in the order `new_member` gives them.
NEW_COLUMNS = ("external_id", *IMPORT_COLUMNS)
#: The columns of a new member that the batch decides, after its referral code and digest.
BATCH_COLUMNS = (
    "updated_at",
    "tier",
    "points_balance",
    "lifetime_points",
    "orders_count",
    "total_spent",
    "enrolled_at",
    "created_at",
)
#: Every column written: a new member's row in full, an existing member's import columns.
WRITTEN_COLUMNS = (*NEW_COLUMNS, "referral_code", "import_digest", *BATCH_COLUMNS)
#: A new member's `NEW_COLUMNS`: typed values (SQLite) or tab-separated `COPY` text
#: (PostgreSQL).
NewMember = tuple[Any, ...] | str
_MEMBERS: Table = Member.__table__  # type: ignore[assignment]


@dataclass
class Writes:
    """What one batch writes, once its rows are worked out."""

    now: datetime
    tier: str
    #: The ids of the batch's members already there.
    ids: dict[str, int]
    #: New members: external_id, and their row but the id (`import_backends.finished_rows`).
    new: list[tuple[str, NewMember]] = field(default_factory=list)
    #: Members already there, in full (`WRITTEN_COLUMNS`), to upsert.
    records: list[dict[str, Any]] = field(default_factory=list)
    #: Consent changes: external_id, channel, granted.
    consents: list[tuple[str, str, bool]] = field(default_factory=list)


def bound_digest(row_digest: str, updated_at: datetime) -> str:
    """The digest stored on a member: the raw row's, bound to the member's `updated_at`."""
    text = f"{row_digest}|{bound_stamp(updated_at)}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@functools.lru_cache(maxsize=1024)
def bound_stamp(updated_at: datetime) -> str:
    """`updated_at` as a digest is bound to it (a batch's members mostly share one)."""
    return updated_at.astimezone(UTC).isoformat()


_FIELDS = IMPORT_COLUMNS[:9]
# COPY's text format: a backslash and the characters that end a value or a line.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_SPECIAL = re.compile(r"[\\\t\n\r]")
#: NULL in COPY's text format.
NULL = "\\N"


def new_member(
    backend: str,
    external_id: str,
    fields: dict[str, Any],
    email_consent: bool | None,
    sms_consent: bool | None,
    attributes: dict[str, Any],
) -> NewMember:
    """The `NEW_COLUMNS` of a member created from a parsed row, for `backend`'s driver."""
    get = fields.get
    if backend == "postgresql":
        email, phone, first_name, last_name, locale, time_zone, year, month, day = map(get, _FIELDS)
        line = (
            f"{external_id}\t{NULL if email is None else email}\t"
            f"{NULL if phone is None else phone}\t"
            f"{NULL if first_name is None else first_name}\t"
            f"{NULL if last_name is None else last_name}\t"
            f"{NULL if locale is None else locale}\t{NULL if time_zone is None else time_zone}\t"
            f"{NULL if year is None else year}\t{NULL if month is None else month}\t"
            f"{NULL if day is None else day}\t{_COPY_FLAGS[email_consent]}\t"
            f"{_COPY_FLAGS[sms_consent]}\t{_json_text(attributes)}"
        )
        # Its only tabs and backslashes those of the format (one a NULL): nothing to escape.
        nulls = (
            email, phone, first_name, last_name, locale, time_zone, year, month, day,
            email_consent, sms_consent,
        ).count(None)  # fmt: skip
        if (
            line.count("\t") == _COPY_TABS
            and line.count("\\") == nulls
            and _LINE_BREAK.search(line) is None
        ):
            return line
        values = [external_id, *map(get, _FIELDS), email_consent, sms_consent, attributes]
        return "\t".join(map(copy_text, values))
    flag = _sqlite_flags()
    return (
        external_id,
        *map(get, _FIELDS),
        flag[email_consent],
        flag[sms_consent],
        _json_text(attributes, _sqlite_json()),
    )


#: `COPY` text of a flag.
_COPY_FLAGS = {None: NULL, True: "t", False: "f"}
#: The tabs between a new member's `COPY` values.
_COPY_TABS = len(NEW_COLUMNS) - 1
_LINE_BREAK = re.compile(r"[\n\r]")
#: The JSON of attributes already seen, by serializer: the attribute columns of a file
#: mostly hold a few values (a segment, a store).
_JSON_TEXTS: dict[Callable[[Any], Any], dict[tuple[tuple[str, str], ...], str]] = {}
_MAX_JSON_TEXTS = 4096


def _json_text(attributes: dict[str, Any], serialize: Callable[[Any], Any] = json.dumps) -> str:
    """`serialize(attributes)`, looked up when the attributes are text seen before."""
    try:
        "".join(attributes.values())  # only text values, which compare as their JSON does
    except TypeError:
        return str(serialize(attributes))
    key = tuple(attributes.items())
    texts = _JSON_TEXTS.setdefault(serialize, {})
    text = texts.get(key)
    if text is None:
        text = str(serialize(attributes))
        if len(texts) < _MAX_JSON_TEXTS:
            texts[key] = text
    return text


def copy_text(value: Any) -> str:
    """One value in `COPY`'s text format (`\\N` for NULL, JSON for a dict)."""
    if value is None:
        return NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        return value.translate(_ESCAPES) if _SPECIAL.search(value) else value
    if isinstance(value, dict | list):
        text = json.dumps(value)
        return text.translate(_ESCAPES) if _SPECIAL.search(text) else text
    return str(value)


@functools.cache
def _sqlite_flags() -> dict[bool | None, Any]:
    """A flag as SQLAlchemy types it for SQLite."""
    dialect = sqlite.dialect()
    process = _MEMBERS.c.email_consent.type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return {None: None, True: process(True), False: process(False)}


@functools.cache
def _sqlite_json() -> Callable[[Any], Any]:
    """The attributes' JSON as SQLAlchemy makes it for SQLite."""
    dialect = sqlite.dialect()
    process = _MEMBERS.c.attributes.type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return process

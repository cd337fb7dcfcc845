"""Writing one batch of parsed member rows in bulk, in one transaction.

The batch's members are read first (locked on PostgreSQL; SQLite's writer holds the
whole file) and the outcome of every row is worked out here: a new member is
inserted with the columns its parsing process made ready, a member already there is
upserted with every written column, and only if it changed (`loyalty.import_backends`
writes them per database). Consent changes, and only changes, go to the consent log
with the source `import`.

Each member written keeps the digest of its raw row, bound to the member's
`updated_at` (`bound_digest`): while nobody changes the member, the same raw row
again is known unchanged without being parsed (`unchanged_keys`). Rows with
warnings keep no digest, so their warnings are reported again on every import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    String,
    Table,
    any_,
    column,
    func,
    select,
    text,
    type_coerce,
)
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from loyalty.import_backends import copy_members, finished_rows, insert_members
from loyalty.import_format import (
    IMPORT_COLUMNS,
    WRITTEN_COLUMNS,
    NewMember,
    Writes,
    bound_digest,
    new_member,
)
from loyalty.member_rows import MemberRow
from loyalty.models import Member

__all__ = [
    "WRITTEN_COLUMNS",
    "BatchResult",
    "Parsed",
    "bound_digest",
    "unchanged_keys",
    "write_batch",
]

_MEMBERS: Table = Member.__table__  # type: ignore[assignment]


@dataclass
class Parsed:
    """One row ready to write: its number in the file, clean fields, raw digest."""

    number: int
    row: MemberRow
    #: The digest of the raw row; None when the row had warnings (never skipped).
    digest: str | None
    #: The member's row but its id should it be new (`finished_rows`), made by the parsing
    #: process before the batch's turn (or here).
    new: NewMember | None = None


@dataclass
class BatchResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Rows of erased members: nothing may bring their data back.
    erased: list[Parsed] = field(default_factory=list)


def unchanged_keys(session: Session, digests: Mapping[str, str]) -> set[str]:
    """The external ids whose raw row is the one last imported, and nobody changed since."""
    if not digests:
        return set()
    # `updated_at` as the driver gives it, converted once per value: a batch's members
    # mostly share one.
    raw_updated_at = type_coerce(_MEMBERS.c.updated_at, NullType())
    rows = session.execute(
        select(_MEMBERS.c.external_id, _MEMBERS.c.import_digest, raw_updated_at).where(
            _external_id_in(session, list(digests)), _MEMBERS.c.import_digest.is_not(None)
        )
    )
    dialect = session.get_bind().dialect
    convert = _MEMBERS.c.updated_at.type.dialect_impl(dialect).result_processor(dialect, None)
    stamps: dict[Any, Any] = {}
    unchanged = set()
    for external_id, stored, updated_at in rows:
        if updated_at not in stamps:
            stamps[updated_at] = updated_at if convert is None else convert(updated_at)
        if stored == bound_digest(digests[external_id], stamps[updated_at]):
            unchanged.add(external_id)
    return unchanged


def _external_id_in(session: Session, keys: list[str]) -> ColumnElement[bool]:
    """`external_id IN (…)` with the keys as one JSON parameter: a statement with thousands
    of parameters, or an array of them, costs more to build than to run."""
    keys_json = json.dumps(keys)
    if session.get_bind().dialect.name == "postgresql":
        # An array built on the server: the lookup stays an index scan.
        return _MEMBERS.c.external_id == any_(
            func.array(
                text("SELECT jsonb_array_elements_text(CAST(:keys AS jsonb))")
                .bindparams(keys=keys_json)
                .columns(column("value", String))
                .scalar_subquery()
            )
        )
    return _MEMBERS.c.external_id.in_(
        text("SELECT value FROM json_each(:keys)")
        .bindparams(keys=keys_json)
        .columns(column("value", String))
    )


def write_batch(
    session: Session, batch: Sequence[Parsed], *, now: datetime, tier: str, all_new: bool = False
) -> BatchResult:
    """Create or update the batch's members in the session's transaction.

    With `all_new`, the members are not looked up but written as new: one already there
    makes the write fail on its external_id (an `IntegrityError`), and nothing is written.
    """
    backend = session.get_bind().dialect.name
    result = BatchResult()
    existing = {} if all_new else _existing(session, batch, backend)
    writes = Writes(now=now, tier=tier, ids={key: row.id for key, row in existing.items()})
    news = writes.new
    consents = writes.consents
    for parsed in batch:
        row = parsed.row
        old = existing.get(row.external_id)
        if old is None:
            result.created += 1
            new = parsed.new
            if new is None:
                columns = new_member(
                    backend,
                    row.external_id,
                    row.fields,
                    row.email_consent,
                    row.sms_consent,
                    row.attributes,
                )
                (new,) = finished_rows(backend, [(columns, parsed.digest)], now, tier)
            news.append((row.external_id, new))
            if row.email_consent is not None:
                consents.append((row.external_id, "email", row.email_consent))
            if row.sms_consent is not None:
                consents.append((row.external_id, "sms", row.sms_consent))
            continue
        if old.erased_at is not None:
            result.erased.append(parsed)
            continue
        record, changed = _record(parsed, old, now, tier, consents)
        if changed:
            result.updated += 1
        else:
            result.unchanged += 1
            if old.import_digest == record["import_digest"]:
                continue
        writes.records.append(record)
    if news or writes.records:
        if backend == "postgresql":
            copy_members(session, writes)
        else:
            insert_members(session, writes)
    return result


def _existing(session: Session, batch: Sequence[Parsed], backend: str) -> dict[str, Row[Any]]:
    """The batch's members already there, by external_id (locked on PostgreSQL)."""
    query = select(
        _MEMBERS.c.id,
        _MEMBERS.c.external_id,
        _MEMBERS.c.updated_at,
        _MEMBERS.c.erased_at,
        _MEMBERS.c.import_digest,
        _MEMBERS.c.referral_code,
        *(_MEMBERS.c[name] for name in IMPORT_COLUMNS),
    ).where(_external_id_in(session, [p.row.external_id for p in batch]))
    if backend == "postgresql":
        query = query.with_for_update()
    return {row.external_id: row for row in session.execute(query)}


def _record(
    parsed: Parsed,
    old: Row[Any],
    now: datetime,
    tier: str,
    consents: list[tuple[str, str, bool]],
) -> tuple[dict[str, Any], bool]:
    """A member's row as the import leaves it, and whether it changed.

    Consent changes are added to `consents`.
    """
    row = parsed.row
    values = {name: getattr(old, name) for name in IMPORT_COLUMNS}
    before = dict(values)
    values.update(row.fields)
    if row.attributes:
        values["attributes"] = {**values["attributes"], **row.attributes}
    for channel, name, wanted in (
        ("email", "email_consent", row.email_consent),
        ("sms", "sms_consent", row.sms_consent),
    ):
        if wanted is not None and wanted != values[name]:
            values[name] = wanted
            consents.append((row.external_id, channel, wanted))
    changed = values != before
    updated_at = now if changed else old.updated_at
    values.update(
        external_id=row.external_id,
        import_digest=None if parsed.digest is None else bound_digest(parsed.digest, updated_at),
        updated_at=updated_at,
        # The columns of a new member, which the upsert's INSERT names; the member keeps its own.
        tier=tier,
        points_balance=0,
        lifetime_points=0,
        referral_code=old.referral_code,
        orders_count=0,
        total_spent=Decimal(0),
        enrolled_at=now,
        created_at=now,
    )
    return values, changed

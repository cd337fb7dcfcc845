"""Writing one batch of parsed member rows in bulk, in one transaction.

The batch's members are read first (locked on PostgreSQL; SQLite's writer holds the
whole file) and the outcome of every row is worked out here, so that every row
written has the same columns: SQLite takes them in one executemany of an upsert,
PostgreSQL through `COPY` into a temporary table and one `INSERT … SELECT … ON
CONFLICT (external_id) DO UPDATE … WHERE` the row changed. Consent changes, and only
changes, go to the consent log with the source `import`.

Each member written keeps the digest of its raw row, bound to the member's
`updated_at` (`bound_digest`): while nobody changes the member, the same raw row
again is known unchanged without being parsed (`unchanged_keys`). Rows with
warnings keep no digest, so their warnings are reported again on every import.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg import Connection as PsycopgConnection
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import (
    ColumnElement,
    Dialect,
    Row,
    String,
    Table,
    any_,
    bindparam,
    column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from loyalty.member_rows import MemberRow
from loyalty.models import Consent, Member, UTCDateTime
from loyalty.referrals import new_referral_codes

__all__ = [
    "WRITTEN_COLUMNS",
    "BatchResult",
    "Parsed",
    "bound_digest",
    "unchanged_keys",
    "write_batch",
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
#: Every column written: a new member's row in full, an existing member's import columns.
WRITTEN_COLUMNS = (
    "external_id",
    *IMPORT_COLUMNS,
    "import_digest",
    "updated_at",
    "tier",
    "points_balance",
    "lifetime_points",
    "referral_code",
    "orders_count",
    "total_spent",
    "enrolled_at",
    "created_at",
)
_UPDATED = (*IMPORT_COLUMNS, "import_digest", "updated_at")
#: The import columns of a member not known before, until the row sets them.
_NEW = dict.fromkeys(IMPORT_COLUMNS)
_MEMBERS: Table = Member.__table__  # type: ignore[assignment]
_CONSENT_COLUMNS = ("member_id", "channel", "purpose", "granted", "source", "at")
_CONSENTS: Table = Consent.__table__  # type: ignore[assignment]


@dataclass
class Parsed:
    """One row ready to write: its number in the file, clean fields, raw digest."""

    number: int
    row: MemberRow
    #: The digest of the raw row; None when the row had warnings (never skipped).
    digest: str | None


@dataclass
class BatchResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Rows of erased members: nothing may bring their data back.
    erased: list[Parsed] = field(default_factory=list)


def bound_digest(row_digest: str, updated_at: datetime) -> str:
    """The digest stored on a member: the raw row's, bound to the member's `updated_at`."""
    text = f"{row_digest}|{_stamp(updated_at)}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@functools.lru_cache(maxsize=1024)
def _stamp(updated_at: datetime) -> str:
    # A batch's members mostly share one `updated_at`.
    return updated_at.astimezone(UTC).isoformat()


def unchanged_keys(session: Session, digests: Mapping[str, str]) -> set[str]:
    """The external ids whose raw row is the one last imported, and nobody changed since."""
    if not digests:
        return set()
    rows = session.execute(
        select(_MEMBERS.c.external_id, _MEMBERS.c.import_digest, _MEMBERS.c.updated_at).where(
            _external_id_in(session, list(digests)), _MEMBERS.c.import_digest.is_not(None)
        )
    )
    return {
        external_id
        for external_id, stored, updated_at in rows
        if stored == bound_digest(digests[external_id], updated_at)
    }


def _external_id_in(session: Session, keys: list[str]) -> ColumnElement[bool]:
    """`external_id IN (…)`; one array parameter on PostgreSQL rather than one per key."""
    if session.get_bind().dialect.name == "postgresql":
        return _MEMBERS.c.external_id == any_(bindparam("keys", keys, type_=ARRAY(String)))
    # One JSON parameter on SQLite too: a statement with thousands of `?` costs more to
    # build than to run.
    return _MEMBERS.c.external_id.in_(
        text("SELECT value FROM json_each(:keys)")
        .bindparams(keys=json.dumps(keys))
        .columns(column("value", String))
    )


def write_batch(
    session: Session, batch: Sequence[Parsed], *, now: datetime, tier: str
) -> BatchResult:
    """Create or update the batch's members in the session's transaction."""
    postgres = session.get_bind().dialect.name == "postgresql"
    result = BatchResult()
    query = select(
        _MEMBERS.c.id,
        _MEMBERS.c.external_id,
        _MEMBERS.c.updated_at,
        _MEMBERS.c.erased_at,
        _MEMBERS.c.import_digest,
        _MEMBERS.c.referral_code,
        *(_MEMBERS.c[name] for name in IMPORT_COLUMNS),
    ).where(_external_id_in(session, [p.row.external_id for p in batch]))
    if postgres:
        query = query.with_for_update()
    existing = {row.external_id: row for row in session.execute(query)}
    records: list[dict[str, Any]] = []
    consents: list[tuple[str, str, bool]] = []
    codes = iter(new_referral_codes(sum(p.row.external_id not in existing for p in batch)))
    for parsed in batch:
        old = existing.get(parsed.row.external_id)
        if old is not None and old.erased_at is not None:
            result.erased.append(parsed)
            continue
        code = next(codes) if old is None else old.referral_code
        record, changed = _record(parsed, old, now, tier, code, consents)
        if old is None:
            result.created += 1
        elif changed:
            result.updated += 1
        else:
            result.unchanged += 1
            if old.import_digest == record["import_digest"]:
                continue
        records.append(record)
    if not records:
        return result
    if postgres:
        _copy_upsert(session, records, existing, consents, now)
    else:
        _sqlite_upsert(session, records, existing, consents, now)
    return result


def _record(
    parsed: Parsed,
    old: Row[Any] | None,
    now: datetime,
    tier: str,
    referral_code: str,
    consents: list[tuple[str, str, bool]],
) -> tuple[dict[str, Any], bool]:
    """The member's row as the import leaves it, and whether it changed.

    Consent changes are added to `consents`.
    """
    row = parsed.row
    if old is None:
        values: dict[str, Any] = {**_NEW, **row.fields}
        values["attributes"] = dict(row.attributes)
        before = None
    else:
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
    changed = before is None or values != before
    updated_at = now if changed or old is None else old.updated_at
    values.update(
        external_id=row.external_id,
        import_digest=None if parsed.digest is None else bound_digest(parsed.digest, updated_at),
        updated_at=updated_at,
        # Written for new members only; an existing member keeps its own.
        tier=tier,
        points_balance=0,
        lifetime_points=0,
        referral_code=referral_code,
        orders_count=0,
        total_spent=Decimal(0),
        enrolled_at=now,
        created_at=now,
    )
    return values, changed


def _consent_rows(
    consents: Iterable[tuple[str, str, bool]], ids: Mapping[str, int], now: Any
) -> list[dict[str, Any]]:
    return [
        {
            "member_id": ids[external_id],
            "channel": channel,
            "purpose": "marketing",
            "granted": granted,
            "source": "import",
            "at": now,
        }
        for external_id, channel, granted in consents
        if external_id in ids
    ]


def _sqlite_upsert(
    session: Session,
    records: list[dict[str, Any]],
    existing: Mapping[str, Row[Any]],
    consents: list[tuple[str, str, bool]],
    now: datetime,
) -> None:
    dialect = session.get_bind().dialect
    _executemany(session, _sqlite_statement(dialect, "members"), records)
    if not consents:
        return
    ids = {key: row.id for key, row in existing.items()}
    new = [r["external_id"] for r in records if r["external_id"] not in ids]
    if new:
        query = select(_MEMBERS.c.external_id, _MEMBERS.c.id)
        for external_id, member_id in session.execute(query.where(_external_id_in(session, new))):
            ids[external_id] = member_id
    _executemany(session, _sqlite_statement(dialect, "consents"), _consent_rows(consents, ids, now))


_Statement = tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]]


def _executemany(session: Session, statement: _Statement, records: list[dict[str, Any]]) -> None:
    """One executemany of the driver, with each value typed as SQLAlchemy would type it."""
    sql_text, names, processors = statement
    pick = operator.itemgetter(*names)
    # A batch's times, flags and amounts are mostly a few values: each is typed once.
    typed: list[tuple[int, Callable[[Any], Any], dict[Any, Any]]] = [
        (i, process, {}) for i, process in enumerate(processors) if process is not None
    ]
    rows = []
    for record in records:
        row = list(pick(record))
        for i, process, memo in typed:
            value = row[i]
            if value is None:
                continue
            if isinstance(value, dict | list):  # JSON
                row[i] = process(value)
            elif value in memo:
                row[i] = memo[value]
            else:
                row[i] = memo[value] = process(value)
        rows.append(tuple(row))
    session.connection().exec_driver_sql(sql_text, rows)


@functools.cache
def _sqlite_statement(dialect: Dialect, table: str) -> _Statement:
    """The SQL of the members upsert or the consents insert, its `?` columns, their types."""
    target: Table = _MEMBERS if table == "members" else _CONSENTS
    columns = WRITTEN_COLUMNS if table == "members" else _CONSENT_COLUMNS
    statement = sqlite.insert(target).values(
        {name: bindparam(name, type_=target.c[name].type) for name in columns}
    )
    if table == "members":
        excluded = statement.excluded
        statement = statement.on_conflict_do_update(
            index_elements=[target.c.external_id],
            set_={name: excluded[name] for name in _UPDATED},
            where=or_(*(target.c[name].is_distinct_from(excluded[name]) for name in _UPDATED)),
        )
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    assert sorted(names) == sorted(columns), names
    processors = tuple(
        target.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    return str(compiled), names, processors


def _copy_upsert(
    session: Session,
    records: list[dict[str, Any]],
    existing: Mapping[str, Row[Any]],
    consents: list[tuple[str, str, bool]],
    now: datetime,
) -> None:
    """New members by one `COPY` into members, with ids drawn from its sequence up front;
    members already there by `COPY` into a temporary table and one upsert."""
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, PsycopgConnection)
    columns = sql.SQL(", ").join(map(sql.Identifier, WRITTEN_COLUMNS))
    ids = {key: row.id for key, row in existing.items()}
    new = [r for r in records if r["external_id"] not in ids]
    known = [r for r in records if r["external_id"] in ids]
    with driver.cursor() as cursor:
        if new:
            # A member another writer adds meanwhile makes the COPY fail on its external_id:
            # the batch is then written row by row, and that row as an update.
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence('members', 'id')) "
                "FROM generate_series(1, %s)",
                [len(new)],
            )
            drawn = [member_id for (member_id,) in cursor.fetchall()]
            with cursor.copy(
                sql.SQL("COPY members (id, {columns}) FROM STDIN").format(columns=columns)
            ) as copy:
                for member_id, row in zip(drawn, _copy_rows(new), strict=True):
                    copy.write_row([member_id, *row])
            for member_id, record in zip(drawn, new, strict=True):
                ids[record["external_id"]] = member_id
        if known:
            _copy_update(cursor, columns, known)
        if consents:
            with cursor.copy(
                sql.SQL("COPY consents ({columns}) FROM STDIN").format(
                    columns=sql.SQL(", ").join(map(sql.Identifier, _CONSENT_COLUMNS))
                )
            ) as copy:
                # The one time of every consent, converted once.
                pick = operator.itemgetter(*_CONSENT_COLUMNS)
                for consent in _consent_rows(consents, ids, _copy_value(now)):
                    copy.write_row(pick(consent))


def _copy_update(cursor: Any, columns: sql.Composed, records: list[dict[str, Any]]) -> None:
    """Members already there: `COPY` into a temporary table, then one upsert that writes
    only the rows that changed."""
    cursor.execute(
        sql.SQL(
            "CREATE TEMPORARY TABLE member_import ON COMMIT DROP AS "
            "SELECT {columns} FROM members WITH NO DATA"
        ).format(columns=columns)
    )
    with cursor.copy(
        sql.SQL("COPY member_import ({columns}) FROM STDIN").format(columns=columns)
    ) as copy:
        for row in _copy_rows(records):
            copy.write_row(row)
    updated = [sql.Identifier(name) for name in _UPDATED]
    cursor.execute(
        sql.SQL(
            "INSERT INTO members ({columns}) SELECT {columns} FROM member_import "
            "ON CONFLICT (external_id) DO UPDATE SET {assign} "
            "WHERE ({current}) IS DISTINCT FROM ({incoming})"
        ).format(
            columns=columns,
            assign=sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(name) for name in updated
            ),
            current=sql.SQL(", ").join(sql.SQL("members.{0}").format(n) for n in updated),
            incoming=sql.SQL(", ").join(sql.SQL("EXCLUDED.{0}").format(n) for n in updated),
        )
    )


def _copy_rows(records: Iterable[dict[str, Any]]) -> Iterator[list[Any]]:
    """The members' rows as COPY takes them, in `WRITTEN_COLUMNS` order."""
    pick = operator.itemgetter(*WRITTEN_COLUMNS)
    times: dict[datetime, Any] = {}  # the batch's times are mostly one value
    for record in records:
        row = list(pick(record))
        for i in _TIME_COLUMNS:
            value = row[i]
            if value is not None:
                if value not in times:
                    times[value] = _copy_value(value)
                row[i] = times[value]
        row[_ATTRIBUTES] = Jsonb(row[_ATTRIBUTES])
        yield row


_TIME_COLUMNS = tuple(
    i for i, name in enumerate(WRITTEN_COLUMNS) if isinstance(_MEMBERS.c[name].type, UTCDateTime)
)
_ATTRIBUTES = WRITTEN_COLUMNS.index("attributes")


def _copy_value(value: Any) -> Any:
    """What COPY takes for a column value: naive UTC times (as `UTCDateTime` stores), JSONB."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, dict):
        return Jsonb(value)
    return value

"""Writing a batch's `Writes` in bulk: SQLite's executemany, PostgreSQL's `COPY`.

New members, whose rows the parsing processes made ready for the driver but for
their ids (`finished_rows`), are inserted with their ids given in the batch's turn:
SQLite's next rowids (its writer holds the whole file), PostgreSQL's drawn from the
members' sequence. Members already there are upserted with every written column, and
only those that changed are written: SQLite by one executemany of `INSERT … ON
CONFLICT (external_id) DO UPDATE … WHERE`, PostgreSQL by `COPY` into a temporary
table and one such `INSERT … SELECT`. Consent changes go to the consent log with the
source `import`.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg import Connection as PsycopgConnection
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Dialect, Table, bindparam, or_
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from loyalty.import_format import (
    BATCH_COLUMNS,
    IMPORT_COLUMNS,
    NEW_COLUMNS,
    NULL,
    WRITTEN_COLUMNS,
    NewMember,
    Writes,
    bound_stamp,
    copy_text,
)
from loyalty.models import Consent, Member, UTCDateTime
from loyalty.referrals import new_referral_codes

__all__ = ["copy_members", "finished_rows", "insert_members"]

_UPDATED = (*IMPORT_COLUMNS, "import_digest", "updated_at")
_MEMBERS: Table = Member.__table__  # type: ignore[assignment]
_CONSENT_COLUMNS = ("member_id", "channel", "purpose", "granted", "source", "at")
_CONSENTS: Table = Consent.__table__  # type: ignore[assignment]
#: The columns a new member is inserted with, in the order of its values.
_INSERTED = ("id", *NEW_COLUMNS, "referral_code", "import_digest", *BATCH_COLUMNS)


def finished_rows(
    backend: str, news: Sequence[tuple[NewMember, str | None]], now: datetime, tier: str
) -> list[NewMember]:
    """New members' rows in full but for their ids, from the columns each one's row decides
    and the digest of the raw row: a referral code drawn for each, the digest bound to
    `now` (as `bound_digest` binds it) and the batch's columns; typed values for SQLite's
    executemany or a `COPY` line for PostgreSQL. Made before the batch's turn to write."""
    codes = new_referral_codes(len(news))
    stamp = f"|{bound_stamp(now)}".encode()
    blake2b = hashlib.blake2b
    digests = [
        None if digest is None else blake2b(digest.encode() + stamp, digest_size=16).hexdigest()
        for _, digest in news
    ]
    batch_values = (now, tier, 0, 0, 0, Decimal(0), now, now)
    if backend == "postgresql":
        # Codes and digests are letters and digits: nothing to escape.
        batch = "\t".join(map(copy_text, map(_copy_value, batch_values)))
        return [
            f"{new}\t{code}\t{digest or NULL}\t{batch}\n"
            for (new, _), code, digest in zip(news, codes, digests, strict=True)
        ]
    process = _processors(_SQLITE, BATCH_COLUMNS)
    typed = tuple(
        v if p is None or v is None else p(v) for v, p in zip(batch_values, process, strict=True)
    )
    rows: list[NewMember] = []
    for (new, _), code, digest in zip(news, codes, digests, strict=True):
        assert isinstance(new, tuple)
        rows.append((*new, code, digest, *typed))
    return rows


_SQLITE = sqlite.dialect()


def insert_members(session: Session, writes: Writes) -> None:
    """Write the batch on SQLite."""
    connection = session.connection()
    dialect = connection.dialect
    ids = writes.ids
    if writes.new:
        last = connection.exec_driver_sql("SELECT coalesce(max(id), 0) FROM members").scalar()
        values: list[Any] = []
        for member_id, (external_id, new) in enumerate(writes.new, start=int(last or 0) + 1):
            assert isinstance(new, tuple)
            values.append(member_id)
            values.extend(new)
            ids[external_id] = member_id
        _insert_rows(connection, "members", _INSERTED, values)
    if writes.records:
        _executemany(session, _sqlite_statement(dialect, "members"), writes.records)
    if writes.consents:
        granted, at = _processors(dialect, ("granted", "at"), _CONSENTS)
        typed = {value: value if granted is None else granted(value) for value in (True, False)}
        now = writes.now if at is None else at(writes.now)
        values = []
        for key, channel, value in writes.consents:
            if key in ids:
                values += (ids[key], channel, "marketing", typed[value], "import", now)
        _insert_rows(connection, "consents", _CONSENT_COLUMNS, values)


#: Rows one SQLite `INSERT` takes (`_insert_rows`): SQLite's per-statement work is then
#: paid once per that many rows, while the statement stays short to compile.
_ROWS_PER_INSERT = 50


def _insert_rows(
    connection: Connection, table: str, columns: tuple[str, ...], values: list[Any]
) -> None:
    """Insert rows given as one flat list of their values (each row's `columns` in turn),
    `_ROWS_PER_INSERT` rows to a statement."""
    width = len(columns)
    step = _ROWS_PER_INSERT * width
    full = len(values) - len(values) % step
    if full:
        statement = _insert_statement(table, columns, _ROWS_PER_INSERT)
        connection.exec_driver_sql(
            statement, [tuple(values[start : start + step]) for start in range(0, full, step)]
        )
    if full < len(values):
        connection.exec_driver_sql(
            _insert_statement(table, columns, (len(values) - full) // width),
            tuple(values[full:]),
        )


@functools.cache
def _insert_statement(table: str, columns: tuple[str, ...], rows: int) -> str:
    row = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}"


@functools.cache
def _processors(
    dialect: Dialect, names: tuple[str, ...], table: Table = _MEMBERS
) -> tuple[Callable[[Any], Any] | None, ...]:
    """How SQLAlchemy types each column for the dialect's driver."""
    return tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)


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
    """The SQL of the members upsert, its `?` columns, their types."""
    target: Table = _MEMBERS
    statement = sqlite.insert(target).values(
        {name: bindparam(name, type_=target.c[name].type) for name in WRITTEN_COLUMNS}
    )
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[target.c.external_id],
        set_={name: excluded[name] for name in _UPDATED},
        where=or_(*(target.c[name].is_distinct_from(excluded[name]) for name in _UPDATED)),
    )
    compiled = statement.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    assert sorted(names) == sorted(WRITTEN_COLUMNS), names
    return str(compiled), names, _processors(dialect, names)


def copy_members(session: Session, writes: Writes) -> None:
    """Write the batch on PostgreSQL."""
    driver = session.connection().connection.driver_connection
    assert isinstance(driver, PsycopgConnection)
    ids = writes.ids
    with driver.cursor() as cursor:
        if writes.new:
            # A member another writer adds meanwhile makes the COPY fail on its external_id:
            # the batch is then written row by row, and that row as an update.
            # Drawn as one text value: thousands of rows cost more to fetch than to draw.
            # The sequence is looked up once (materialized), not once per id drawn.
            cursor.execute(
                "WITH s AS MATERIALIZED "
                "(SELECT pg_get_serial_sequence('members', 'id')::regclass AS seq) "
                "SELECT string_agg(nextval(s.seq)::text, ',') FROM s, generate_series(1, %s)",
                [len(writes.new)],
            )
            (drawn_text,) = cursor.fetchone() or ("",)
            drawn = [int(member_id) for member_id in drawn_text.split(",")]
            lines = []
            for member_id, (external_id, new) in zip(drawn, writes.new, strict=True):
                lines.append(f"{member_id}\t{new}")
                ids[external_id] = member_id
            with cursor.copy(_copy_statement("members", _INSERTED)) as copy:
                # In parts, so the server starts on them while the next are sent; the
                # consents are made ready while it finishes.
                for start in range(0, len(lines), _COPY_PART):
                    copy.write("".join(lines[start : start + _COPY_PART]))
                consents = _consent_lines(writes)
        else:
            consents = _consent_lines(writes)
        if writes.records:
            _copy_update(cursor, writes.records)
        if consents:
            with cursor.copy(_copy_statement("consents", _CONSENT_COLUMNS)) as copy:
                copy.write(consents)


#: Rows sent to the server at a time by `COPY`.
_COPY_PART = 500


def _consent_lines(writes: Writes) -> str:
    """The batch's consent changes as `COPY` text (every member's id known)."""
    ids = writes.ids
    at = copy_text(_copy_value(writes.now))
    return "".join(
        f"{ids[key]}\t{channel}\tmarketing\t{copy_text(value)}\timport\t{at}\n"
        for key, channel, value in writes.consents
        if key in ids
    )


def _copy_statement(table: str, columns: Iterable[str]) -> sql.Composed:
    return sql.SQL("COPY {table} ({columns}) FROM STDIN").format(
        table=sql.Identifier(table), columns=sql.SQL(", ").join(map(sql.Identifier, columns))
    )


def _copy_update(cursor: Any, records: list[dict[str, Any]]) -> None:
    """Members already there: `COPY` into a temporary table, then one upsert that writes
    only the rows that changed."""
    columns = sql.SQL(", ").join(map(sql.Identifier, WRITTEN_COLUMNS))
    cursor.execute(
        sql.SQL(
            "CREATE TEMPORARY TABLE member_import ON COMMIT DROP AS "
            "SELECT {columns} FROM members WITH NO DATA"
        ).format(columns=columns)
    )
    with cursor.copy(_copy_statement("member_import", WRITTEN_COLUMNS)) as copy:
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
    """What COPY takes for a time: naive UTC, as `UTCDateTime` stores it."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    return value

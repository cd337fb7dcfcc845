"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import ColumnElement, any_
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean

if TYPE_CHECKING:
    from alembic.config import Config

#: The newest schema revision (loyalty/migrations/versions): what a current database holds.
#: Checked here without Alembic, which every command would otherwise import to start;
#: a test holds it to Alembic's head.
SCHEMA_HEAD = "0018"

#: What an insert that only counts its rows returns.
_ONE: Any = literal_column("1")

__all__ = [
    "Database",
    "alembic_config",
    "among",
    "downgrade",
    "error_text",
    "insert_ignore",
    "insert_ignore_ids",
    "insert_ignore_returning",
    "insert_ignore_rows",
    "per_transaction",
    "update_rows",
    "upgrade",
]

#: Milliseconds a SQLite writer waits for the lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    # The driver's own transaction handling is switched off so that every
    # transaction can begin IMMEDIATE: a deferred one that later writes can
    # fail with "database is locked" without waiting.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A connection marked read-only (`Database.reading`) takes no write lock, so it
    # neither waits for a writer nor holds one up.
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN DEFERRED")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


#: Execution option of a connection that only reads.
READ_ONLY = "loyalty_read_only"


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        # Statement errors never quote their parameters (email addresses, phone numbers,
        # message bodies): their text reaches logs, dead letters and error columns.
        kwargs: dict[str, Any] = {"echo": echo, "future": True, "hide_parameters": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads: on SQLite it waits for no writer."""
        with (
            self.engine.connect().execution_options(**{READ_ONLY: True}) as connection,
            Session(bind=connection) as session,
        ):
            yield session

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def is_migrated(self) -> bool:
        """Whether the schema is at the newest revision this code knows (SCHEMA_HEAD)."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return False
            current = set(connection.scalars(text("SELECT version_num FROM alembic_version")))
        return current == {SCHEMA_HEAD}

    def dispose(self) -> None:
        self.engine.dispose()


def error_text(exc: BaseException) -> str:
    """`Type: message` for storing, with no SQL parameters or values the server quotes back.

    A database error names its statement and parameters, and PostgreSQL adds detail
    lines with the row's values ("Key (email)=(…)", "Failing row contains (…)"): only
    the first line of the driver's message is kept.
    """
    if isinstance(exc, StatementError):
        message = str(exc.args[0]) if exc.args else ""
        first = message.strip().splitlines()[0] if message.strip() else ""
        return f"{type(exc).__name__}: {first}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


#: While set (`program_frozen`), the `per_transaction` dicts kept for the whole block.
_frozen_program: ContextVar[dict[str, dict[Any, Any]] | None] = ContextVar(
    "frozen_program", default=None
)


@contextmanager
def program_frozen() -> Iterator[None]:
    """Within, what `per_transaction` keeps is kept for the whole block, not per transaction:
    for a simulation, whose copy of the program changes none of it (the journeys published,
    their pauses) while it runs."""
    token = _frozen_program.set({})
    try:
        yield
    finally:
        _frozen_program.reset(token)


def per_transaction(session: Session, key: str) -> dict[Any, Any]:
    """A dict kept for the session's current transaction only (a fresh one in the next):
    what a batch's transaction reads once and asks for many times (of the program's set-up,
    never of members; within `program_frozen`, kept for the block)."""
    frozen = _frozen_program.get()
    if frozen is not None:
        return frozen.setdefault(key, {})
    transaction = session.get_transaction()
    kept = session.info.get(key)
    if kept is None or transaction is None or kept[0] is not transaction:
        kept = session.info[key] = (transaction, {})
    memo: dict[Any, Any] = kept[1]
    return memo


#: Inserts built once per dialect, table, conflict keys and RETURNING (`_insert_ignore`).
_inserts: dict[tuple[Any, ...], Any] = {}


def _insert_ignore(
    dialect: str, table: Any, keys: tuple[str, ...], returning: tuple[Any, ...]
) -> Any:
    # Built once, so compiled once (SQLAlchemy's cache finds it); rows go as parameters.
    key = (dialect, table, keys, returning)
    statement = _inserts.get(key)
    if statement is None:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(table).on_conflict_do_nothing(index_elements=keys).returning(*returning)
        _inserts[key] = statement
    return statement


#: Rows from which a PostgreSQL insert goes as one array per column (`_unnest_insert`): a
#: statement with a placeholder per value is parsed again by the driver for every call
#: once it has more than psycopg's 50 cached parameters (`_split_query`, about a third of
#: a 500-email batch's insert).
UNNEST_FROM_ROWS = 4


def _unnest_insert(
    table: Any, columns: tuple[str, ...], keys: tuple[str, ...], returning: tuple[Any, ...]
) -> Any:
    """INSERT … SELECT unnest(:many_a), unnest(:many_b), … ON CONFLICT (keys) DO NOTHING
    RETURNING: any number of rows in one statement of one parameter per column."""
    key = ("unnest", table, columns, keys, returning)
    statement = _inserts.get(key)
    if statement is None:
        target: Table = getattr(table, "__table__", table)
        arrays = [
            func.unnest(bindparam(f"many_{c}", type_=postgresql.ARRAY(target.c[c].type)))
            for c in columns
        ]
        statement = (
            postgresql.insert(target)
            .from_select(list(columns), select(*arrays))
            .on_conflict_do_nothing(index_elements=keys)
            .returning(*returning)
        )
        _inserts[key] = statement
    return statement


def insert_ignore_rows(
    session: Session,
    table: Table | type[Any],
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    *columns: Any,
) -> list[Row[Any]]:
    """INSERT rows (all with the same columns) … ON CONFLICT (keys) DO NOTHING, in one
    statement; `columns` of each row inserted (RETURNING)."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql" and len(rows) >= UNNEST_FROM_ROWS:
        names = tuple(rows[0])
        statement = _unnest_insert(table, names, tuple(keys), columns)
        arrays = {f"many_{c}": [row[c] for row in rows] for c in names}
        return list(session.execute(statement, arrays))
    statement = _insert_ignore(dialect, table, tuple(keys), columns)
    return list(session.execute(statement, list(rows)))


def insert_ignore(
    session: Session, table: Table | type[Any], rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> int:
    """INSERT … ON CONFLICT (keys) DO NOTHING; returns how many rows were inserted."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    # RETURNING counts what was inserted on both backends (psycopg reports rowcount -1 here).
    if any(row.keys() != rows[0].keys() for row in rows):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        varied = insert(table).values(list(rows)).on_conflict_do_nothing(index_elements=keys)
        return len(session.execute(varied.returning(_ONE)).all())
    return len(insert_ignore_rows(session, table, rows, keys, _ONE))


def insert_ignore_ids(
    session: Session,
    table: Table | type[Any],
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str],
    column: Any,
) -> list[int]:
    """INSERT rows (all with the same columns) … ON CONFLICT (keys) DO NOTHING, in one
    statement; the integer `column` (the id) of each row inserted."""
    if not rows:
        return []
    return [int(row[0]) for row in insert_ignore_rows(session, table, rows, keys, column)]


def insert_ignore_returning(
    session: Session,
    table: Table | type[Any],
    row: dict[str, Any],
    keys: Sequence[str],
    column: Any,
) -> int | None:
    """INSERT one row … ON CONFLICT (keys) DO NOTHING; its integer `column` (its id), or None
    when a row with the same keys was there already."""
    dialect = session.get_bind().dialect.name
    found = session.scalar(_insert_ignore(dialect, table, tuple(keys), (column,)), row)
    return None if found is None else int(found)


class _Among(ColumnElement[bool]):
    """`among`: the column, and the name of the list parameter it is compared with."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a comparison: no "= 1" after it where booleans are ints
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("name", InternalTraversal.dp_string),
    ]

    def __init__(self, column: ColumnElement[Any], name: str) -> None:
        self.column = column
        self.name = name


def among(column: Any, name: str) -> ColumnElement[bool]:
    """`column` IN the list given as the parameter `name` when the statement runs.

    On PostgreSQL ``column = ANY(:name)``: one array parameter whatever the count, so the
    statement and the driver's parse of it stay the same (psycopg parses a statement of
    more than 50 parameters again at every call, and SQLAlchemy expands an IN list at
    every call); elsewhere an expanding ``IN``.
    """
    return _Among(column, name)


@compiles(_Among)
def _among_listed(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    listed = element.column.in_(bindparam(element.name, expanding=True))
    return str(compiler.process(listed, **kw))


@compiles(_Among, "postgresql")
def _among_array(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    array = bindparam(element.name, type_=postgresql.ARRAY(element.column.type))
    return str(compiler.process(element.column == any_(array), **kw))


def update_rows(
    session: Session,
    table: Table | type[Any],
    rows: Sequence[Mapping[str, Any]],
    values: Mapping[str, Any] | None = None,
) -> None:
    """UPDATE rows by their ``id``: each row's own columns (every row gives the same names)
    and `values` (constants or SQL expressions) for them all.

    On PostgreSQL one statement whatever the number of rows, its values one array per
    column (``UPDATE … FROM (SELECT unnest(:ids), unnest(:a), …)``): a row each, as the
    ORM's flush sends them, costs the driver a statement each. Elsewhere one statement run
    for each row.
    """
    if not rows:
        return
    target = table if isinstance(table, Table) else table.__table__
    names = [name for name in rows[0] if name != "id"]
    if session.get_bind().dialect.name == "postgresql":
        arrays = [
            func.unnest(
                bindparam(
                    f"many_{name}",
                    [row[name] for row in rows],
                    type_=postgresql.ARRAY(target.c[name].type),
                )
            ).label(name)
            for name in ["id", *names]
        ]
        given = select(*arrays).subquery("given")
        statement = (
            update(target)
            .where(target.c.id == given.c.id)
            .values({**{name: given.c[name] for name in names}, **(values or {})})
        )
        session.execute(statement)
        return
    each = (
        update(target)
        .where(target.c.id == bindparam("row_id"))
        .values({**{name: bindparam(f"row_{name}") for name in names}, **(values or {})})
    )
    session.execute(
        each,
        [{"row_id": row["id"], **{f"row_{name}": row[name] for name in names}} for row in rows],
    )


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "loyalty:migrations")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema up to `revision` (Alembic)."""
    from alembic import command

    _migrate(database, lambda config: command.upgrade(config, revision))


def downgrade(database: Database, revision: str) -> None:
    """Take the schema back down to `revision` (Alembic)."""
    from alembic import command

    _migrate(database, lambda config: command.downgrade(config, revision))


def _migrate(database: Database, run: Callable[[Config], None]) -> None:
    config = alembic_config(database.url)
    with database.engine.connect() as connection, _foreign_keys_off(connection):
        config.attributes["connection"] = connection
        run(config)
        connection.commit()


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """On SQLite, no foreign key enforcement while migrations rebuild tables.

    Batch migrations copy a table, drop it and rename the copy; with enforcement on,
    SQLite refuses to drop a table other rows point at. The pragma only takes effect
    outside a transaction, so it goes straight to the driver before the migration
    begins and after it has committed; the keys are checked before they are back on.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.dbapi_connection
    assert driver is not None and not connection.in_transaction()
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = driver.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migration left rows with broken foreign keys: {broken[:5]}")
    finally:
        driver.execute("PRAGMA foreign_keys=ON")

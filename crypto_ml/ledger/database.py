"""Opening the ledger: one SQLAlchemy engine per process, its schema upgraded to the newest migration.

The URL comes from the caller, else ``CRYPTO_ML_DATABASE_URL``, else a SQLite
file beside the model store (``config.Settings.resolved_database_url``).
SQLite and PostgreSQL are supported: recording relies on their
``INSERT ... ON CONFLICT``.

Opening is safe from many processes at once (every worker of a cluster may
start together): on PostgreSQL the upgrade runs under an advisory lock; on
SQLite every transaction starts with ``BEGIN IMMEDIATE``, so upgrades, like
all writes, take turns, and the second finds the schema already current.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, func, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from ..exceptions import InvalidParameterError, LedgerError, MissingDependencyError
from .schema import Base

__all__ = ["Ledger", "open_ledger", "mask_url", "insert_new", "database_errors", "table_counts", "SUPPORTED_BACKENDS"]

log = logging.getLogger(__name__)

#: The databases whose INSERT ... ON CONFLICT the recording relies on.
SUPPORTED_BACKENDS = ("sqlite", "postgresql")

#: Milliseconds a SQLite writer waits for another's transaction before failing: a recording batch
#: takes well under a second, so 30 s means "something is stuck", not "busy".
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: Seconds to wait for PostgreSQL to accept a connection: long enough for a busy server, short
#: enough that a wrong host fails a cycle quickly.
POSTGRES_CONNECT_TIMEOUT_S = 10

#: The key of the PostgreSQL advisory lock held while the schema is upgraded (any constant shared
#: by every process, and unlikely to be chosen by another application: "cryptol" in ASCII).
MIGRATION_LOCK_KEY = 0x63_72_79_70_74_6F_6C

#: The execution option of ``Ledger.reading`` connections.
READ_ONLY_OPTION = "crypto_ml_read_only"


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***``, for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


class Ledger:
    """An open ledger: the engine every module of the package writes through.

    Attributes:
        engine: The SQLAlchemy engine.
        url: The database URL with its password masked, for display.
        backend: ``"sqlite"`` or ``"postgresql"``.

    Use as a context manager, or call ``close`` when done.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = mask_url(engine.url)
        self.backend = engine.dialect.name

    def reading(self, *, autocommit: bool = False) -> Connection:
        """A connection for reading only (use it in a ``with``).

        On SQLite its transactions do not take the write lock (see ``_sqlite_engine``),
        so a long report never holds up a cycle's writes; elsewhere it is a plain connection.

        Args:
            autocommit: On PostgreSQL, run each statement in a transaction of its own
                (``AUTOCOMMIT``): no ``BEGIN`` before the first, no ``ROLLBACK`` when the
                connection goes back to the pool, two round trips fewer. For short reads
                whose statements need not share a snapshot (under PostgreSQL's default
                READ COMMITTED they never do anyway); the HTTP API reads this way. No
                effect on SQLite.
        """
        options: dict[str, Any] = {READ_ONLY_OPTION: True}
        if autocommit and self.backend == "postgresql":
            options["isolation_level"] = "AUTOCOMMIT"
        return self.engine.connect().execution_options(**options)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.url!r})"


def open_ledger(
    url: str | None = None,
    *,
    upgrade: bool = True,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pre_ping: bool = True,
) -> Ledger:
    """Open the ledger at ``url`` and bring its schema to the newest migration.

    Args:
        url: A SQLAlchemy URL: ``sqlite:///path/ledger.sqlite`` or
            ``postgresql+psycopg://user:password@host/db``. None: the
            settings' (``CRYPTO_ML_DATABASE_URL``, else ledger.sqlite beside the model store).
        upgrade: Run the migrations up to the newest; idempotent, and safe
            when several processes open the ledger at once.
        pool_size: PostgreSQL connections kept open for reuse; None: SQLAlchemy's 5, enough for the
            pipeline. A server with many threads (the HTTP API) keeps more, or every request past the
            fifth opens and closes a connection of its own.
        max_overflow: Connections opened beyond ``pool_size`` when all are in use, closed when returned;
            None: SQLAlchemy's 10.
        pre_ping: Test each PostgreSQL connection (``SELECT 1``) as it leaves the pool, so one that died with
            a database restart is replaced before use. False saves that round trip on every use; a dead
            connection then fails the statement that meets it, and SQLAlchemy replaces every connection
            opened before it (the caller must retry: the HTTP API answers 503, its job runner ticks again).

    Returns:
        The open ledger.

    Raises:
        InvalidParameterError: the URL cannot be parsed or names another database.
        MissingDependencyError: the PostgreSQL driver is not installed.
        LedgerError: the database cannot be reached or upgraded.
    """
    if url is None:
        from ..config import get_settings

        url = get_settings().resolved_database_url()
    engine = _create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pre_ping=pre_ping)
    try:
        if upgrade:
            upgrade_schema(engine)
        else:
            with engine.connect():
                pass
    except SQLAlchemyError as exc:
        engine.dispose()
        raise LedgerError(
            f"cannot open the ledger database at {mask_url(engine.url)}: {_reason(exc)}; check that it is running and "
            "that CRYPTO_ML_DATABASE_URL names it"
        ) from exc
    return Ledger(engine)


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message on one line (SQLAlchemy's repeats the statement and every parameter)."""
    original = getattr(exc, "orig", None)
    return " ".join(str(original or exc).split())[:500]


@contextmanager
def database_errors(ledger: Ledger, doing: str, then: str = "") -> Iterator[None]:
    """Turn a database failure inside the block into a ``LedgerError`` naming the ledger (password masked).

    Args:
        ledger: The ledger written to.
        doing: What failed, e.g. "recording forecasts".
        then: What the user can do about it, appended to the message.
    """
    try:
        yield
    except SQLAlchemyError as exc:
        raise LedgerError(f"{doing} in the ledger at {ledger.url} failed: {_reason(exc)}{then}") from exc


def _create_engine(
    url: str, *, pool_size: int | None = None, max_overflow: int | None = None, pre_ping: bool = True
) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidParameterError(
            f"database URL {mask_url(url)!r} is not a SQLAlchemy URL; give one such as "
            "sqlite:////path/ledger.sqlite or postgresql+psycopg://user:password@host/db (CRYPTO_ML_DATABASE_URL)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise InvalidParameterError(
            f"database URL {mask_url(parsed)!r} names {backend!r}; the ledger runs on "
            f"{' or '.join(SUPPORTED_BACKENDS)} (sqlite:////path/ledger.sqlite or postgresql+psycopg://user:password@host/db)"
        )
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed)
        pool: dict[str, int] = {}
        if pool_size is not None:
            pool["pool_size"] = pool_size
        if max_overflow is not None:
            pool["max_overflow"] = max_overflow
        return create_engine(
            parsed,
            # A connection that died with a database restart is replaced before use, not handed to a write.
            pool_pre_ping=pre_ping,
            connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
            **pool,
        )
    except (ImportError, NoSuchModuleError) as exc:
        raise MissingDependencyError(
            f"the driver for {mask_url(parsed)!r} is not installed ({exc}); install it with: "
            "pip install 'crypto-ml[postgres]' (and use the postgresql+psycopg:// scheme)"
        ) from None


def _sqlite_engine(url: URL) -> Engine:
    memory = url.database in (None, "", ":memory:")
    if not memory:
        assert url.database is not None
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        # One shared connection for an in-memory database, or each connection would see its own empty one.
        **({"poolclass": StaticPool, "connect_args": {"check_same_thread": False}} if memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling would BEGIN lazily (DEFERRED); turn it off and begin below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not memory:
            # WAL: readers (a report) never block the pipeline's writes, nor it them.
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A writer's transaction takes the write lock up front (IMMEDIATE): a DEFERRED one that reads
        # and then writes fails at once with "database is locked" when another process wrote in
        # between, without waiting out busy_timeout; an IMMEDIATE one waits its turn instead.
        # Ledger.reading's connections only read, and never need the lock.
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


#: Alembic runs its migration environment through module-level globals (``alembic.context``), so
#: two threads of one process upgrading at once trample each other (seen: a crash in SQLite);
#: they take turns here, and processes take turns through the database's own lock.
_UPGRADE_LOCK = threading.Lock()


def upgrade_schema(engine: Engine) -> None:
    """Run the Alembic migrations up to the newest, under a lock so concurrent openers take turns."""
    with _UPGRADE_LOCK:
        _upgrade_schema(engine)


def _upgrade_schema(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    with engine.connect() as connection:
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            connection.execute(select(func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
            connection.commit()
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
        finally:
            if postgres:
                connection.rollback()
                connection.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))
                connection.commit()


def insert_new(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], key: Sequence[str]) -> int:
    """``INSERT ... ON CONFLICT (key) DO NOTHING`` of ``rows`` in one statement; returns how many were new.

    What makes every write of the ledger idempotent: a row whose key is already
    there is left as it is, so writing the same rows twice adds nothing. Every
    row must have the same keys. RETURNING counts the new rows (the drivers'
    rowcount is -1 for these statements).
    """
    if not rows:
        return 0
    if connection.dialect.name == "postgresql":
        return _insert_new_postgres(connection, table, rows, key)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    # SQLAlchemy sends these as multi-row VALUES statements ("insertmanyvalues"), 1,000 rows each.
    statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=list(key)).returning(table.c[key[0]])
    return len(connection.execute(statement, list(rows)).all())


def _insert_new_postgres(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], key: Sequence[str]
) -> int:
    """One ``INSERT ... SELECT * FROM unnest(<one array per column>)``: a short statement with one parameter per
    column, where a multi-row VALUES has one per value and psycopg spends most of the time parsing it (measured:
    3,000 forecast rows and their 6,000 intervals took 0.7 s that way)."""
    from sqlalchemy import bindparam
    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.dialects.postgresql import insert as postgres_insert

    columns = list(rows[0])
    arrays = [
        bindparam(f"values_{column}", [row[column] for row in rows], type_=ARRAY(table.c[column].type))
        for column in columns
    ]
    source = func.unnest(*arrays).table_valued(*columns).render_derived()
    statement = (
        postgres_insert(table)
        .from_select(columns, select(*(source.c[column] for column in columns)))
        .on_conflict_do_nothing(index_elements=list(key))
        .returning(table.c[key[0]])
    )
    return len(connection.execute(statement).all())


def table_counts(ledger: Ledger) -> dict[str, int]:
    """Rows in each of the ledger's tables, by table name."""
    with ledger.reading() as connection:
        return {
            name: int(connection.execute(text(f"SELECT count(*) FROM {table.name}")).scalar_one())
            for name, table in Base.metadata.tables.items()
        }

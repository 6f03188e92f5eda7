"""Connection handling for the metadata database: pooled, lazy, with timeouts, schema-aware.

``DATABASE_URL`` unset means the embedded server (:mod:`videoqa_pipeline.storage.embedded`); set,
it is used as given. Either way callers see the same :class:`Database`: a psycopg connection pool
whose connections carry the configured ``statement_timeout``, plus versioned schema setup that
many processes may run at once. Nothing connects until the first use, so building Dagster
definitions never touches the database. No Dagster import here.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from videoqa_pipeline.settings import mask_passwords_in
from videoqa_pipeline.storage.errors import DatabaseUnavailableError, StorageError
from videoqa_pipeline.storage.migrations import (
    SCHEMA_LOCK_KEY,
    MigrationContext,
    apply_migrations,
)

logger = logging.getLogger(__name__)

#: Migrations may build indexes on big tables: they get a longer statement timeout than queries.
MIGRATION_STATEMENT_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the metadata database is and how to talk to it.

    Attributes:
        url: ``DATABASE_URL`` (psycopg 3 URL); None starts or joins the embedded server.
        home: ``VIDEOQA_HOME``; the embedded server keeps its data in ``home/pgdata``.
        pool_size: ``POSTGRES_POOL_SIZE``: most connections this process opens.
        timeout_seconds: ``POSTGRES_TIMEOUT``: connect timeout, wait for a pooled connection, and
            ``statement_timeout`` of every statement.
    """

    url: str | None
    home: Path
    pool_size: int = 5
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError(f"POSTGRES_POOL_SIZE must be at least 1, got {self.pool_size}")
        if self.timeout_seconds <= 0:
            raise ValueError(f"POSTGRES_TIMEOUT must be positive, got {self.timeout_seconds}")


def redact_url(url: str) -> str:
    """Return ``postgresql://host:port/dbname`` for ``url``: no user, no password, no options.

    Unix socket directories are percent-encoded into the host, as libpq accepts them. A URL whose
    password holds an unencoded ``@`` or ``/`` is read by libpq with a piece of the password as
    host, port or database name: those pieces are masked too.
    """
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparseable URL)"
    host = str(params.get("host") or "localhost").split(",")[0]
    port = str(params.get("port") or "5432").split(",")[0]
    dbname = str(params.get("dbname") or params.get("user") or "postgres")
    return mask_passwords_in(f"postgresql://{quote(host, safe='')}:{port}/{quote(dbname, safe='')}", url)


class _PasswordFilter(logging.Filter):
    """Masks the passwords of this process's database URLs in psycopg's and its pool's log records.

    The pool logs every failed connection attempt with libpq's message, which quotes what libpq
    parsed: for a URL it cannot read, the URL itself or a piece of the password.
    """

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls:
            message = masked = record.getMessage()
            for url in tuple(self.urls):
                masked = mask_passwords_in(masked, url)
            if masked != message:
                record.msg, record.args = masked, None
        return True


_PASSWORD_FILTER = _PasswordFilter()
for _name in ("psycopg", "psycopg.pool"):
    logging.getLogger(_name).addFilter(_PASSWORD_FILTER)


class Database:
    """A metadata database: resolved URL, connection pool, schema management.

    Use :func:`get_database` rather than building one per call: a pool per process is the point.
    """

    def __init__(self, settings: DatabaseSettings) -> None:
        """Remember the settings; connect lazily on first use.

        Args:
            settings: Where the database is; ``url=None`` means the embedded server.
        """
        self.settings = settings
        self._lock = threading.RLock()
        self._url: str | None = None
        self._pool: ConnectionPool | None = None
        self._schema_ready = False
        self._embedding_type: str | None = None

    @property
    def url(self) -> str:
        """The connection URL, starting or joining the embedded server when no URL was configured.

        Raises:
            EmbeddedDatabaseError: the embedded server could not be started.
        """
        with self._lock:
            if self._url is None:
                if self.settings.url is not None:
                    self._url = self.settings.url
                    _PASSWORD_FILTER.urls.add(self._url)
                else:
                    from videoqa_pipeline.storage.embedded import embedded_database_url

                    self._url = embedded_database_url(self.settings.home)
            return self._url

    @property
    def redacted_url(self) -> str:
        """:attr:`url` without credentials, safe for logs and metadata."""
        return redact_url(self.url)

    @property
    def is_embedded(self) -> bool:
        """True when this database is the embedded server."""
        return self.settings.url is None

    def _configure_connection(self, conn: psycopg.Connection) -> None:
        milliseconds = int(self.settings.timeout_seconds * 1000)
        conn.execute(f"SET statement_timeout = {milliseconds}")
        conn.commit()

    def _check_url(self) -> None:
        """Fail at once, password masked, when libpq cannot read the URL (no pool retries for it)."""
        try:
            conninfo_to_dict(self.url)
            return
        except psycopg.ProgrammingError as error:
            problem = mask_passwords_in(str(error), self.url)
        # Raised outside the handler: the driver's error (which quotes the password) is not chained.
        raise DatabaseUnavailableError(
            f"DATABASE_URL cannot be read as a PostgreSQL connection URL: {problem}. Percent-encode "
            "special characters of the user name and password (@ as %40, / as %2F, # as %23, % as %25)."
        )

    def _get_pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is not None:
                return self._pool
            timeout = self.settings.timeout_seconds
            self._check_url()
            pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=self.settings.pool_size,
                timeout=timeout,
                kwargs={"connect_timeout": max(2, math.ceil(timeout))},
                configure=self._configure_connection,
                # The embedded server may have restarted since a connection was pooled.
                check=ConnectionPool.check_connection,
                name=f"videoqa-{os.getpid()}",
                open=False,
            )
            try:
                pool.open(wait=True, timeout=timeout)
            except PoolTimeout as error:
                pool.close()
                raise DatabaseUnavailableError(
                    f"Could not connect to the metadata database {self.redacted_url} within {timeout:g} s "
                    "(POSTGRES_TIMEOUT). Check that the server is up and DATABASE_URL is right, or unset "
                    "DATABASE_URL to use the embedded server."
                ) from error
            self._pool = pool
            # Registered after the URL resolved (which registers the embedded server's release), so
            # at exit, handlers running in reverse order close this pool before the server stops.
            atexit.register(self.close)
            return pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """Borrow a pooled connection; commits on success, rolls back on error.

        Yields:
            A psycopg connection (not in autocommit) with ``statement_timeout`` set.

        Raises:
            DatabaseUnavailableError: no connection became free or could be made in time.
        """
        pool = self._get_pool()
        try:
            with pool.connection() as conn:
                yield conn
        except PoolTimeout as error:
            raise DatabaseUnavailableError(
                f"No connection to {self.redacted_url} became available within "
                f"{self.settings.timeout_seconds:g} s: all {self.settings.pool_size} pooled connections are "
                "busy or the server does not answer. Raise POSTGRES_POOL_SIZE / POSTGRES_TIMEOUT, or check "
                "the server."
            ) from error

    def ensure_schema(self) -> list[int]:
        """Create or migrate the schema to the current version; safe from many processes at once.

        Migrations run in one transaction holding a PostgreSQL advisory lock, so concurrent callers
        queue up and all but the first find nothing to do. The ``vector`` extension is created
        first when the server offers it. Cached per :class:`Database` after the first success.

        Returns:
            The migration versions this call applied (usually empty).

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
            StorageError: a migration failed (the message says which).
        """
        with self._lock:
            if self._schema_ready:
                return []
            with self.connection() as conn, conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {MIGRATION_STATEMENT_TIMEOUT_SECONDS * 1000}")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                has_pgvector = _ensure_vector_extension(conn)
                try:
                    applied = apply_migrations(conn, MigrationContext(has_pgvector=has_pgvector))
                except psycopg.Error as error:
                    raise StorageError(
                        f"Schema migration of {self.redacted_url} failed: {error}. Nothing was changed "
                        "(the migration runs in one transaction); fix the cause and restart."
                    ) from error
            self._embedding_type = None
            self._schema_ready = True
            if applied:
                logger.info("Migrated %s to schema versions %s", self.redacted_url, applied)
            return applied

    @property
    def embedding_column_type(self) -> str:
        """SQL type of ``videoqa_embeddings.embedding``: ``"vector"`` or ``"real[]"``.

        Read from the catalog (not from the extension list): a table created before pgvector was
        installed keeps ``real[]``.
        """
        with self._lock:
            if self._embedding_type is None:
                self.ensure_schema()
                with self.connection() as conn:
                    row = conn.execute(
                        """SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                           WHERE attrelid = 'videoqa_embeddings'::regclass AND attname = 'embedding'"""
                    ).fetchone()
                self._embedding_type = "vector" if row is not None and row[0] == "vector" else "real[]"
            return self._embedding_type

    @property
    def has_pgvector(self) -> bool:
        """True when embeddings are stored in a pgvector ``vector`` column."""
        return self.embedding_column_type == "vector"

    def close(self) -> None:
        """Close the pool. The embedded server itself is released at process exit."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def _ensure_vector_extension(conn: psycopg.Connection) -> bool:
    """Create the ``vector`` extension if the server offers it; return whether it is installed."""
    installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    if installed is not None:
        return True
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    if available is None:
        logger.info("pgvector is not installed on this server: embeddings are stored as real[]")
        return False
    try:
        with conn.transaction():  # a savepoint: a refusal must not abort the migration
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return True
    except psycopg.Error as error:
        logger.warning("Could not create the pgvector extension (%s): embeddings are stored as real[]", error)
        return False


_databases: dict[tuple[int, DatabaseSettings], Database] = {}
_databases_lock = threading.Lock()


def get_database(settings: DatabaseSettings) -> Database:
    """Return this process's :class:`Database` for ``settings``, creating it on first call.

    Cached per process id as well, so a forked child never shares its parent's pool.

    Args:
        settings: Database settings (hashable; equal settings share one pool).

    Returns:
        The shared, lazily connecting :class:`Database`.
    """
    key = (os.getpid(), settings)
    with _databases_lock:
        database = _databases.get(key)
        if database is None:
            database = Database(settings)
            _databases[key] = database
        return database

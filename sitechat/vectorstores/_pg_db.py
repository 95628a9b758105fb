"""Connecting to PostgreSQL for the pgvector store: the pool, the bootstrap, the errors.

Connection problems are reported by host, port, database and user, never by DSN: a DSN
carries the password. Any text that comes back from the driver is scrubbed of the
password before it reaches a message, and driver exceptions raised while connecting are
not chained (``from None``), because their text may quote the DSN.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from sitechat.errors import (
    ConfigurationError,
    CorruptIndexError,
    EmbedderMismatchError,
    IndexNotFoundError,
    StoreError,
)
from sitechat.vectorstores import _pg_sql as q
from sitechat.vectorstores.base import EmbedderInfo

__all__ = [
    "CollectionRecord",
    "CollectionSettings",
    "Target",
    "database_errors",
    "make_pool",
    "open_collection",
    "parse_target",
]

logger = logging.getLogger(__name__)

_URL_PASSWORD_RE = re.compile(r"://[^:/@\s]*:([^@\s]*)@")
_KV_PASSWORD_RE = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


APPLICATION_NAME = "sitechat"  # how a DBA finds sitechat's sessions in pg_stat_activity


@dataclass(frozen=True, slots=True)
class Target:
    """Where the store connects, described without the password."""

    dsn: str
    host: str
    port: str
    dbname: str
    user: str
    password: str
    names_application: bool = False

    def connect_kwargs(self, timeout: float) -> dict[str, Any]:
        """Keyword arguments for every connection: autocommit, a timeout, a name."""
        kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, round(timeout))}
        if not self.names_application:
            kwargs["application_name"] = APPLICATION_NAME
        return kwargs

    def describe(self) -> str:
        return (
            f"PostgreSQL at {self.host}:{self.port}, database '{self.dbname}', user '{self.user}'"
        )

    def redact(self, text: str) -> str:
        """``text`` with every form of the password replaced by ``***``."""
        if self.password:
            for form in {self.password, quote(self.password, safe=""), quote(self.password)}:
                text = text.replace(form, "***")
        text = _URL_PASSWORD_RE.sub("://***:***@", text)
        return _KV_PASSWORD_RE.sub("password=***", text)


_DSN_FORMS = (
    "Use the form postgresql://USER:PASSWORD@HOST:5432/DBNAME (percent-encode special "
    "characters in the password: '@' as %40, '/' as %2F, ':' as %3A, '%' as %25) or "
    "'host=... port=... dbname=... user=... password=...'."
)
_URI_PREFIXES = ("postgresql://", "postgres://")
_PORT_RE = re.compile(r"^\d{1,5}$")


def _malformed(dsn: str, parts: dict[str, Any]) -> bool:
    """Whether a DSN the driver accepted was most likely mistyped.

    libpq reads ``postgresql://user:pa/ss@host/db`` as host ``user``, port ``pa`` and
    database ``ss@host/db``, and ``user:pa@ss@host`` as host ``ss@host``: its host, port
    and database then hold pieces of the password, and must not reach a message. A URI
    whose address part has more than one ``@``, whose path has one, or whose parsed port
    is not a number is refused instead.
    """
    if dsn.startswith(_URI_PREFIXES):
        rest = dsn.split("://", 1)[1]
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        authority, path = rest[:cut], rest[cut:].split("?", 1)[0]
        if authority.count("@") > 1 or "@" in path:
            return True
    ports = str(parts.get("port") or "")
    if ports and not all(_PORT_RE.match(p) and 0 < int(p) < 65536 for p in ports.split(",") if p):
        return True
    return any("@" in str(parts.get(name) or "") for name in ("host", "hostaddr", "port"))


def parse_target(dsn: str) -> Target:
    """Check the DSN's syntax and pull out what an error message may show.

    A DSN that does not parse cleanly (see :func:`_malformed`) is refused without echoing
    any part of it: its host, port or database could be pieces of the password.
    """
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        # the driver's message may quote the DSN, password included: say what is expected
        raise ConfigurationError(
            f"SITECHAT_PGVECTOR__DSN is not a valid PostgreSQL connection string. {_DSN_FORMS}"
        ) from None
    if _malformed(dsn, parts):
        raise ConfigurationError(
            "SITECHAT_PGVECTOR__DSN is malformed: its host, port or database name cannot be "
            "told apart from the password (a password with '@' or '/' that is not "
            f"percent-encoded, or a missing '@' after the password). {_DSN_FORMS}"
        )

    def part(name: str, default: str) -> str:
        value = parts.get(name)
        return str(value) if value not in (None, "") else default

    return Target(
        dsn=dsn,
        host=part("host", part("hostaddr", "localhost")),
        port=part("port", "5432"),
        dbname=part("dbname", part("user", "(default)")),
        user=part("user", "(default)"),
        password=part("password", ""),
        names_application=bool(parts.get("application_name")),
    )


def rolled_back(exc: BaseException) -> bool:
    """Whether PostgreSQL rolled the transaction back for a conflict (SQLSTATE class 40: a
    deadlock, a serialization failure), so running it again may well succeed. psycopg
    does not make every such error a ``TransactionRollback``, hence the SQLSTATE."""
    return str(getattr(exc, "sqlstate", None) or "").startswith("40")


def describe_failure(target: Target, exc: BaseException) -> StoreError:
    """One wording per kind of failure, with what to do about it; no password."""
    detail = target.redact(" ".join(str(exc).split()))[:500]
    where = target.describe()
    if isinstance(exc, PoolTimeout):
        return StoreError(
            f"No connection to {where} became available in time ({detail}). Raise "
            "SITECHAT_PGVECTOR__POOL_MAX or SITECHAT_PGVECTOR__POOL_TIMEOUT, or check the "
            "server's load and max_connections."
        )
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return StoreError(
            f"The user lacks a permission on {where}: {detail}. Grant it (see the "
            "'Permissions' section of the vector store docs) or use another user."
        )
    if isinstance(exc, pg_errors.UndefinedTable):
        return CorruptIndexError(
            f"A table of the sitechat collection is missing on {where} ({detail}). It was "
            "dropped outside sitechat: re-ingest into a new collection."
        )
    if rolled_back(exc):
        return StoreError(
            f"A write to {where} conflicted with another one and was rolled back, changing "
            f"nothing ({detail}). Run it again; if it keeps happening, have fewer processes "
            "write the same pages at once."
        )
    if isinstance(exc, pg_errors.QueryCanceled):  # statement_timeout, or a cancel
        return StoreError(
            f"{where} cancelled a statement ({detail}). If it hit the server's "
            "statement_timeout, raise it for the sitechat user, or write in smaller batches."
        )
    if isinstance(exc, psycopg.OperationalError):
        lowered = detail.lower()
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            return StoreError(
                f"{where} refused the login: {detail}. Check the user and password in "
                "SITECHAT_PGVECTOR__DSN."
            )
        if "does not exist" in lowered and "database" in lowered:
            return StoreError(
                f"{where}: {detail}. Create the database first (CREATE DATABASE) or fix the "
                "database name in SITECHAT_PGVECTOR__DSN."
            )
        return StoreError(
            f"Could not reach {where}: {detail}. Check the host and port in "
            "SITECHAT_PGVECTOR__DSN, the network path (security groups) and that the server "
            "is up."
        )
    return StoreError(f"{where} failed: {type(exc).__name__}: {detail}.")


@contextlib.contextmanager
def database_errors(target: Target) -> Iterator[None]:
    """Map driver and pool exceptions to sitechat's, without the password or the DSN."""
    try:
        yield
    except (psycopg.Error, PoolTimeout) as exc:
        raise describe_failure(target, exc) from None


@contextlib.asynccontextmanager
async def connect_once(
    target: Target, timeout: float
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """One autocommit connection, for the bootstrap: it reports a refused login at once,
    where a pool would retry in the background until its timeout."""
    with database_errors(target):
        conn = await psycopg.AsyncConnection.connect(target.dsn, **target.connect_kwargs(timeout))
    try:
        yield conn
    finally:
        await conn.close()


async def make_pool(
    target: Target,
    *,
    min_size: int,
    max_size: int,
    timeout: float,
    connect_timeout: float,
    ef_search: int,
) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    """An open pool whose connections know the ``vector`` type and the HNSW search depth."""

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await register_vector_async(conn)
        await conn.execute("SELECT set_config('hnsw.ef_search', %s, false)", [str(ef_search)])

    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
        target.dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        open=False,
        configure=configure,
        kwargs=target.connect_kwargs(connect_timeout),
        name="sitechat-pgvector",
    )
    try:
        with database_errors(target):
            await pool.open(wait=True, timeout=connect_timeout)
    except BaseException:
        await pool.close()
        raise
    return pool


# ---------------------------------------------------------------------- bootstrap


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    """A row of the manifest table."""

    table: str
    format: str
    format_version: int
    embedder_name: str
    embedder_dimension: int
    text_search_config: str


async def read_collection(
    conn: psycopg.AsyncConnection[Any], schema: str, collection: str
) -> CollectionRecord | None:
    """The manifest row of ``collection``, or None when it (or the schema) does not exist."""
    manifest = sql.Identifier(schema, q.COLLECTIONS_TABLE).as_string(conn)
    cur = await conn.execute("SELECT to_regclass(%s)", [manifest])
    found = await cur.fetchone()
    if found is None or found[0] is None:
        return None
    cur = await conn.execute(q.collection_row_query(schema), [collection])
    row = await cur.fetchone()
    if row is None:
        return None
    return CollectionRecord(
        table=str(row[0]),
        format=str(row[1]),
        format_version=int(row[2]),
        embedder_name=str(row[3]),
        embedder_dimension=int(row[4]),
        text_search_config=str(row[5]),
    )


async def ensure_extension(
    conn: psycopg.AsyncConnection[Any], target: Target, create: bool
) -> None:
    """Make sure pgvector is installed in the database, installing it if allowed."""
    cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'")
    if await cur.fetchone() is not None:
        return
    if not create:
        raise StoreError(
            f"The pgvector extension is not installed in {target.describe()}. Ask an "
            "administrator to run CREATE EXTENSION vector in that database, or allow sitechat "
            "to do it (SITECHAT_PGVECTOR__CREATE_EXTENSION=true and a user who may)."
        )
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except (pg_errors.InsufficientPrivilege, pg_errors.FeatureNotSupported) as exc:
        raise StoreError(
            f"Could not install the pgvector extension in {target.describe()} "
            f"({target.redact(str(exc).strip())}). Run CREATE EXTENSION vector as the database "
            "owner or rds_superuser once, then retry."
        ) from None
    except pg_errors.UndefinedFile:
        raise StoreError(
            f"The server at {target.host}:{target.port} has no pgvector extension to install. "
            "Use PostgreSQL with pgvector (RDS and Aurora PostgreSQL 15.2+ include it)."
        ) from None


@dataclass(frozen=True, slots=True)
class CollectionSettings:
    """What creating or opening a collection needs from the store's configuration."""

    schema: str
    create_extension: bool
    text_search_config: str
    connect_timeout: float


async def open_collection(
    target: Target,
    settings: CollectionSettings,
    collection: str,
    embedder: EmbedderInfo | None,
    *,
    create: bool,
) -> CollectionRecord:
    """Find the collection's manifest row, creating schema, extension and table if asked.

    A reader (``create=False``) never runs DDL, so a read-only database user can serve
    chats from a collection another user built. A writer (``create=True``) whose embedder
    differs from the recorded one re-creates the collection for its embedder if it holds
    no chunks (a first ingest that failed, say with an unreachable embedding API), rather
    than leaving it locked to the first embedder; see :func:`_replace_if_empty`.
    """
    async with connect_once(target, settings.connect_timeout) as conn:
        with database_errors(target):
            record = await read_collection(conn, settings.schema, collection)
            if record is None and (not create or embedder is None):
                raise _not_found(target, settings.schema, collection)
            if (
                create
                and embedder is not None
                and (record is None or _replaceable(record, embedder))
            ):
                async with conn.transaction():
                    # one creator at a time per schema, across processes
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        [advisory_lock_key(settings.schema)],
                    )
                    record = await read_collection(conn, settings.schema, collection)
                    if record is None:
                        await ensure_extension(conn, target, settings.create_extension)
                        record = await _create_collection(conn, settings, collection, embedder)
                    elif _replaceable(record, embedder):
                        record = await _replace_if_empty(
                            conn, settings, collection, embedder, record
                        )
    if record is None:  # pragma: no cover - every path above returns or creates one
        raise _not_found(target, settings.schema, collection)
    _check_record(record, target, settings.schema, collection, embedder)
    return record


def _replaceable(record: CollectionRecord, embedder: EmbedderInfo) -> bool:
    """Whether ``record`` is in this sitechat's format but for another embedder."""
    return (
        record.format == q.FORMAT_NAME
        and record.format_version == q.FORMAT_VERSION
        and EmbedderInfo(record.embedder_name, record.embedder_dimension) != embedder
    )


async def _replace_if_empty(
    conn: psycopg.AsyncConnection[Any],
    settings: CollectionSettings,
    collection: str,
    embedder: EmbedderInfo,
    record: CollectionRecord,
) -> CollectionRecord:
    """Re-create ``collection`` for ``embedder`` if its table holds no chunks; else leave
    it (and its record, which the caller then refuses as another embedder's).

    Runs inside the caller's transaction, which holds the schema's advisory lock. The
    ACCESS EXCLUSIVE lock on the chunk table waits for every writer with uncommitted rows
    and holds off new ones until the transaction ends, so the emptiness seen here is
    still true when the table is dropped: no concurrent insert can be lost. A writer that
    waited meanwhile finds the new table, of the new dimension, and fails loudly.
    """
    names = q.CollectionNames(settings.schema, record.table)
    await conn.execute(q.lock_collection_statement(names))
    cur = await conn.execute(q.holds_chunks_query(names))
    row = await cur.fetchone()
    if row is None or bool(row[0]):
        return record
    logger.info(
        "re-creating the empty collection %r for the embedder %r (dimension %d); it was "
        "made for %r (dimension %d)",
        collection,
        embedder.name,
        embedder.dimension,
        record.embedder_name,
        record.embedder_dimension,
    )
    await conn.execute(q.drop_collection_statement(names))
    await conn.execute(q.delete_collection_statement(settings.schema), [collection])
    return await _create_collection(conn, settings, collection, embedder)


async def _create_collection(
    conn: psycopg.AsyncConnection[Any],
    settings: CollectionSettings,
    collection: str,
    embedder: EmbedderInfo,
) -> CollectionRecord:
    for statement in q.create_schema_statements(settings.schema):
        await conn.execute(statement)
    table = q.collection_table_name(collection)
    names = q.CollectionNames(settings.schema, table)
    for statement in q.create_collection_statements(
        names, embedder.dimension, settings.text_search_config
    ):
        await conn.execute(statement)
    record = CollectionRecord(
        table=table,
        format=q.FORMAT_NAME,
        format_version=q.FORMAT_VERSION,
        embedder_name=embedder.name,
        embedder_dimension=embedder.dimension,
        text_search_config=settings.text_search_config,
    )
    await conn.execute(
        q.insert_collection_statement(settings.schema),
        [
            collection,
            record.table,
            record.format,
            record.format_version,
            record.embedder_name,
            record.embedder_dimension,
            record.text_search_config,
        ],
    )
    if embedder.dimension > q.MAX_INDEXED_DIMENSION:
        logger.warning(
            "pgvector indexes at most %d dimensions: collection %r (dimension %d) will be "
            "searched exactly, which slows down past ~50k chunks",
            q.MAX_INDEXED_DIMENSION,
            collection,
            embedder.dimension,
        )
    return record


def advisory_lock_key(schema: str) -> str:
    """The advisory lock serialising DDL on one schema, across processes."""
    return f"sitechat-pgvector:{schema}"


def _check_record(
    record: CollectionRecord,
    target: Target,
    schema: str,
    collection: str,
    embedder: EmbedderInfo | None,
) -> None:
    if record.format != q.FORMAT_NAME or record.format_version != q.FORMAT_VERSION:
        raise CorruptIndexError(
            f"The collection '{collection}' in schema '{schema}' of {target.describe()} is in "
            f"format {record.format!r} version {record.format_version}, and this sitechat "
            f"reads {q.FORMAT_NAME!r} version {q.FORMAT_VERSION}. Upgrade sitechat, or "
            "re-ingest into a new collection."
        )
    recorded = EmbedderInfo(record.embedder_name, record.embedder_dimension)
    if embedder is not None and embedder != recorded:
        raise EmbedderMismatchError(
            f"The collection '{collection}' in schema '{schema}' was built with the embedder "
            f"'{recorded.name}' (dimension {recorded.dimension}), but '{embedder.name}' "
            f"(dimension {embedder.dimension}) is configured. Re-ingest into a new collection "
            "(--index NEW_NAME), or configure the original embedder."
        )


def _not_found(target: Target, schema: str, collection: str) -> IndexNotFoundError:
    return IndexNotFoundError(
        f"No sitechat collection '{collection}' in schema '{schema}' of {target.describe()}. "
        f"Build one first: SITECHAT_VECTORSTORE__PROVIDER=pgvector sitechat ingest <URL> "
        f"--index {collection}"
    )

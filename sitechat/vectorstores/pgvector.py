"""The PostgreSQL store: pgvector for vectors, full-text search for keywords, one database.

For deployments that outgrow one machine (RDS or Aurora PostgreSQL): every app container
connects to the same database, so an index is built once and served by all. Select it with
``SITECHAT_VECTORSTORE__PROVIDER=pgvector`` and ``SITECHAT_PGVECTOR__DSN``; the collection
is ``SITECHAT_INDEX`` (``--index``).

In the database (schema ``SITECHAT_PGVECTOR__SCHEMA``, ``sitechat`` by default)::

    collections                 manifest: name -> table, format version, embedder, count
    chunks_<name>_<hash>        one row per chunk: text, metadata (jsonb), vector(dim),
                                a generated tsvector (title A, headings B, text C)
        indexes                 HNSW (vector_cosine_ops), GIN (tsvector), GIN (metadata
                                jsonb_path_ops), btree (url)

Both halves of hybrid search run in the database: ``search`` is a cosine nearest-neighbour
query (exact while the collection is small, served by the HNSW index past
``hnsw_threshold``), ``keyword_search`` a full-text query served by the GIN index and ranked
by word rarity and ``ts_rank`` (see ``_pg_sql``). The retriever issues them concurrently,
each on its own pooled connection.

Writes are transactions: an upsert of many chunks commits all or nothing, and other
processes see it when it commits. :meth:`PgVectorStore.persist` records the chunk count in
the manifest, refreshes the planner's statistics after large changes and builds the HNSW
index when the collection has grown past the threshold. Any number of processes may read
and write one collection.

A collection records the embedder (name, dimension) that built it, and opening it with
another raises ``EmbedderMismatchError`` -- unless it holds no chunks and is opened to
write (``create=True``, as an ingest does): then it is dropped and re-created for the new
embedder, in one transaction holding an ACCESS EXCLUSIVE lock on its table, so a first
ingest that failed does not lock the collection to its embedder.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel

from sitechat.config import load_provider_config
from sitechat.errors import (
    ConfigurationError,
    InvalidInputError,
    MissingDependencyError,
    StoreError,
)
from sitechat.models import Chunk, SearchHit
from sitechat.vectorstores._pg_config import PgVectorConfig
from sitechat.vectorstores._rows import check_chunk_text, storable, storable_filter, unit_rows
from sitechat.vectorstores.base import EmbedderInfo, PageSizes, StoreCheck, VectorStore

# the driver is an extra: without it the store is still listed, and says what to install
# when it is opened (as the openai and bedrock providers do when they are built)
_missing_driver: str | None = None
try:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

    from sitechat.vectorstores import _pg_db as db
    from sitechat.vectorstores import _pg_sql as q
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    _missing_driver = exc.name or "psycopg"

if TYPE_CHECKING:
    from sitechat.config import Settings

__all__ = ["PgVectorConfig", "PgVectorStore"]

logger = logging.getLogger(__name__)

# how far from 1 a stored vector's length may be (float32 rounding is ~1e-7)
_UNIT_TOLERANCE = 1e-3
# tries of an upsert that PostgreSQL rolled back for a deadlock or a serialization failure
_WRITE_ATTEMPTS = 3

T = TypeVar("T")


def _require_driver() -> None:
    """Refuse to open a store without psycopg, naming the extra that installs it."""
    if _missing_driver is not None:
        raise MissingDependencyError(_missing_driver, "pgvector", "The 'pgvector' vector store")


class PgVectorStore(VectorStore):
    """A vector store in a PostgreSQL database with pgvector; see the module docstring.

    Open it with :meth:`open` (from settings) or :meth:`open_dsn`; close it with
    :meth:`aclose`, which closes the connection pool. One instance serves any number of
    concurrent chats: each call borrows a pooled connection.
    """

    name: ClassVar[str] = "pgvector"
    supports_keyword_search: ClassVar[bool] = True
    config_class: ClassVar[type[BaseModel] | None] = PgVectorConfig

    def __init__(
        self,
        *,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        target: db.Target,
        collection: str,
        statements: q.Statements,
        embedder: EmbedderInfo,
        config: PgVectorConfig,
    ) -> None:
        """Use :meth:`open` or :meth:`open_dsn`; this only wires already-checked parts."""
        self._pool = pool
        self._target = target
        self._collection = collection
        self._sql = statements
        self._embedder = embedder
        self._config = config
        self._dirty = False
        self._closed = False
        self._indexed = False
        self._changed_rows = 0  # since the last ANALYZE

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(
        cls, settings: Settings, embedder: EmbedderInfo | None, *, create: bool
    ) -> PgVectorStore:
        """Open the collection ``settings.index`` in the database of ``SITECHAT_PGVECTOR__DSN``."""
        _require_driver()
        config = load_provider_config(PgVectorConfig, cls.name, settings.env_file)
        if config.dsn is None or not config.dsn.get_secret_value().strip():
            raise ConfigurationError(
                "The pgvector store needs a database. Set SITECHAT_PGVECTOR__DSN="
                "postgresql://USER:PASSWORD@HOST:5432/DBNAME (in the environment or .env)."
            )
        return await cls.open_dsn(
            config.dsn.get_secret_value(), settings.index, embedder, create=create, config=config
        )

    @classmethod
    async def open_dsn(
        cls,
        dsn: str,
        collection: str,
        embedder: EmbedderInfo | None,
        *,
        create: bool = False,
        config: PgVectorConfig | None = None,
    ) -> PgVectorStore:
        """Open ``collection`` in the database at ``dsn``, creating it for ``embedder`` if asked.

        ``embedder=None`` adopts the recorded embedder; another embedder than the recorded
        one is refused, except that ``create=True`` re-creates an empty collection for it
        (see the module docstring). Raises ``IndexNotFoundError``,
        ``EmbedderMismatchError``, ``CorruptIndexError`` or ``StoreError``; no message
        contains the password. ``config`` supplies the other settings (defaults otherwise).
        """
        _require_driver()
        config = config or PgVectorConfig()
        if not collection.strip():
            raise InvalidInputError("The collection name (SITECHAT_INDEX) is empty; name one.")
        target = db.parse_target(dsn)
        record = await db.open_collection(
            target,
            db.CollectionSettings(
                schema=config.schema,
                create_extension=config.create_extension,
                text_search_config=config.text_search_config,
                connect_timeout=config.connect_timeout,
            ),
            collection,
            embedder,
            create=create,
        )
        pool = await db.make_pool(
            target,
            min_size=config.pool_min,
            max_size=config.pool_max,
            timeout=config.pool_timeout,
            connect_timeout=config.connect_timeout,
            ef_search=config.ef_search,
        )
        store = cls(
            pool=pool,
            target=target,
            collection=collection,
            statements=q.Statements(
                q.CollectionNames(config.schema, record.table), record.text_search_config
            ),
            embedder=EmbedderInfo(record.embedder_name, record.embedder_dimension),
            config=config,
        )
        try:
            await store._check_index(build=create)
        except BaseException:
            await pool.close()
            raise
        return store

    # ------------------------------------------------------------------ properties

    @property
    def embedder(self) -> EmbedderInfo:
        return self._embedder

    @property
    def collection(self) -> str:
        """The collection name (``settings.index``)."""
        return self._collection

    @property
    def table(self) -> str:
        """The schema-qualified table holding this collection's chunks."""
        return f"{self._sql.names.schema}.{self._sql.names.table}"

    # ------------------------------------------------------------------ writes

    async def upsert(self, chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
        """Insert or replace ``chunks`` by id, all in one transaction."""
        if len(chunks) != len(vectors):
            raise InvalidInputError(
                f"upsert got {len(chunks)} chunks but {len(vectors)} vectors; pass one vector "
                "per chunk, in the same order."
            )
        if not chunks:
            return
        check_chunk_text(chunks)
        matrix = unit_rows(vectors, self._embedder)
        # last one wins; ids are compared as stored, without NUL characters
        latest = {q.without_nul(chunk.id): position for position, chunk in enumerate(chunks)}
        # in id order, so that writers upserting the same chunks lock their rows in the same
        # order: in the order given, two ingests of one page deadlock
        rows = [q.chunk_params(chunks[p], matrix[p]) for _, p in sorted(latest.items())]

        async def write(conn: psycopg.AsyncConnection[Any]) -> None:
            for attempt in range(_WRITE_ATTEMPTS):
                try:
                    async with conn.transaction(), conn.cursor() as cur:
                        await cur.executemany(self._sql.upsert, rows)
                    return
                except psycopg.Error as exc:
                    if not db.rolled_back(exc) or attempt == _WRITE_ATTEMPTS - 1:
                        raise  # a deadlock rolls back the whole upsert: safe to run again

        await self._run(write)
        self._dirty = True
        self._changed_rows += len(rows)

    async def delete(self, ids: Sequence[str]) -> int:
        ids = [i for i in ids if storable(i)]  # a lone surrogate names no stored chunk
        if not ids:
            return 0
        removed = await self._rowcount(self._sql.delete_ids, [[q.without_nul(i) for i in ids]])
        self._note_removed(removed)
        return removed

    async def delete_by_url(self, url: str) -> int:
        self._check_open()
        if not storable(url):
            return 0
        removed = await self._rowcount(self._sql.delete_url, [q.without_nul(url)])
        self._note_removed(removed)
        return removed

    def _note_removed(self, removed: int) -> None:
        if removed:
            self._dirty = True
            self._changed_rows += removed

    async def persist(self) -> None:
        """Record the chunk count in the manifest (the data is committed already), refresh
        the planner's statistics after big changes, and build the HNSW index once the
        collection has ``hnsw_threshold`` chunks."""
        self._check_open()
        if not self._dirty:
            return
        rows = await self._write_fetch(self._sql.record_count, [self._collection])
        self._dirty = False
        count = int(rows[0][0]) if rows else 0
        if self._changed_rows * 10 >= count:
            # keyword ranking reads word rarity from these statistics; autovacuum would
            # refresh them too, but only some time after an ingest
            await self._rowcount(self._sql.analyze, [])
            self._changed_rows = 0
        if not self._indexed:
            await self._maybe_build_index(count)

    @property
    def indexed(self) -> bool:
        """Whether the HNSW index exists (below ``hnsw_threshold`` searches are exact)."""
        return self._indexed

    async def _check_index(self, *, build: bool) -> None:
        schema = self._sql.names.schema
        rows = await self._fetch(self._sql.has_hnsw, [schema, self._sql.hnsw_name])
        self._indexed = bool(rows[0][0])
        if build and not self._indexed and self._config.hnsw_threshold == 0:
            await self._maybe_build_index(0)

    async def _maybe_build_index(self, count: int) -> None:
        if (
            count < self._config.hnsw_threshold
            or self._embedder.dimension > q.MAX_INDEXED_DIMENSION
        ):
            return
        logger.info("building the HNSW index of %s (%d chunks)", self.table, count)
        memory = f"{self._config.hnsw_build_memory_mb}MB"
        statement = self._sql.create_hnsw(self._config.hnsw_m, self._config.hnsw_ef_construction)

        async def build(conn: psycopg.AsyncConnection[Any]) -> None:
            # readers keep searching (exactly) while it builds; writers wait for it
            async with conn.transaction():
                key = db.advisory_lock_key(self._sql.names.schema)
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])
                await conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", [memory])
                await conn.execute(statement)

        await self._run(build)
        self._indexed = True

    async def verify(self) -> StoreCheck:
        """The base checks (every chunk readable, counts agree, the text of ingest's chunks
        against their content hash), then the table's own: every vector of the store's
        dimension and of unit length, no index left invalid by a failed build, and the
        HNSW index present once the collection needs it."""
        base = await super().verify()
        problems = list(base.problems)
        dimension, tolerance = self._embedder.dimension, _UNIT_TOLERANCE
        rows = await self._fetch(self._sql.odd_vectors, [dimension, tolerance])
        wrong_size, off_unit, example = rows[0]
        named = f" (e.g. chunk {example!r})" if example else ""
        if wrong_size:
            problems.append(f"vectors not of dimension {dimension}: {wrong_size}{named}")
        if off_unit:
            problems.append(f"vectors not of unit length: {off_unit}{named}")
        names = self._sql.names
        invalid = await self._fetch(self._sql.invalid_indexes, [names.schema, names.table])
        if invalid:
            listed = ", ".join(str(row[0]) for row in invalid)
            problems.append(f"indexes left invalid by a failed build: {listed} (drop them)")
        await self._check_index(build=False)
        if (
            not self._indexed
            and base.chunks >= self._config.hnsw_threshold
            and dimension <= q.MAX_INDEXED_DIMENSION
        ):
            problems.append(
                f"the HNSW index is missing at {base.chunks} chunks (searches are exact "
                "and slow); persist() builds it"
            )
        return StoreCheck(
            f"pgvector collection {self.table}",
            chunks=base.chunks,
            vectors=base.chunks,  # one per row, NOT NULL
            checked=(*base.checked, "vectors", "indexes"),
            problems=tuple(problems),
        )

    async def aclose(self) -> None:
        """Record the count, then close every pooled connection."""
        if self._closed:
            return
        try:
            await self.persist()
        finally:
            self._closed = True
            await self._pool.close()

    # ------------------------------------------------------------------ reads

    async def search(
        self, vector: Sequence[float], k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        """Cosine similarity (higher is better) of the ``k`` nearest chunks passing ``where``.

        The HNSW index answers; when a filter leaves it fewer than ``k`` candidates, the
        passing rows are scanned exactly instead, so a selective filter still finds all.
        """
        query = unit_rows([vector], self._embedder)[0]
        if k < 1 or not query.any() or not storable_filter(where):
            return []
        condition, params = q.filter_clause(where)
        params.update(vector=query, k=k)
        depth = min(k, q.MAX_EF_SEARCH) if k > self._config.ef_search else None

        async def nearest(conn: psycopg.AsyncConnection[Any]) -> list[SearchHit]:
            rows = await self._nearest_rows(conn, condition, params, depth, exact=False)
            if len(rows) < k and (condition is not None or k > q.MAX_EF_SEARCH):
                rows = await self._nearest_rows(conn, condition, params, None, exact=True)
            return [_hit(row) for row in rows]

        return await self._read(nearest)

    async def _nearest_rows(
        self,
        conn: psycopg.AsyncConnection[Any],
        condition: q.Condition,
        params: dict[str, Any],
        depth: int | None,
        *,
        exact: bool,
    ) -> list[tuple[Any, ...]]:
        statement = self._sql.nearest(condition, exact=exact)
        if depth is None:
            cur = await conn.execute(statement, params)
            return await cur.fetchall()
        async with conn.transaction():  # set_config(..., true) lasts for this query only
            await conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(depth)])
            cur = await conn.execute(statement, params)
            return await cur.fetchall()

    async def keyword_search(
        self, query: str, k: int = 5, where: Mapping[str, str] | None = None
    ) -> list[SearchHit]:
        """PostgreSQL full-text search for any of the query's words, rare words counting most.

        Scores are a rarity-weighted count of matched words plus their ``ts_rank``: higher
        is better, comparable within one query only.
        """
        words = [w for w in q.keyword_terms(query) if storable(w)]
        if k < 1 or not words or not storable_filter(where):
            return []
        condition, params = q.filter_clause(where)
        params.update(words=words, k=k)
        statement = self._sql.keyword(condition)

        async def ranked(conn: psycopg.AsyncConnection[Any]) -> list[SearchHit]:
            cur = await conn.execute(statement, params)
            return [_hit(row) for row in await cur.fetchall()]

        return await self._read(ranked)

    async def get(self, ids: Sequence[str]) -> list[Chunk]:
        ids = [i for i in ids if storable(i)]
        if not ids:
            return []
        stored = [q.without_nul(i) for i in ids]
        rows = await self._fetch(self._sql.get, [stored])
        found = {row[0]: q.chunk_from_row(row) for row in rows}
        return [found[i] for i in stored if i in found]

    async def chunk_hashes(self, url: str | None = None) -> dict[str, str]:
        if url is None:
            rows = await self._fetch(self._sql.hashes_all, [])
        elif not storable(url):
            return {}
        else:
            rows = await self._fetch(self._sql.hashes_url, [q.without_nul(url)])
        return {str(chunk_id): str(digest) for chunk_id, digest in rows}

    async def urls(self) -> list[str]:
        return [str(row[0]) for row in await self._fetch(self._sql.urls, [])]

    async def count(self) -> int:
        rows = await self._fetch(self._sql.count, [])
        return int(rows[0][0])

    async def page_sizes(self, urls: Sequence[str]) -> PageSizes | None:
        """Chunks per page, and the collection's total as its last save recorded it; None
        before the first save (no total to compare with).

        The page counts are live and the total is not: while an ingest adds pages, the
        total is raised to at least the pages' own sum, so that no page counts as more
        than the whole collection. A URL is matched as it is stored, without NUL."""
        asked = list(dict.fromkeys(u for u in urls if storable(u)))
        stored = {url: q.without_nul(url) for url in asked}
        rows = await self._fetch(
            self._sql.page_sizes, [list(dict.fromkeys(stored.values())), self._collection]
        )
        found = {str(url): int(n) for url, n in rows if url is not None}
        recorded = max((int(n) for url, n in rows if url is None), default=0)
        if recorded <= 0:
            return None
        counts = {url: found[key] for url, key in stored.items() if key in found}
        return PageSizes(counts, max(recorded, sum(found.values())))

    # ------------------------------------------------------------------ plumbing

    async def _fetch(self, statement: q.Query, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async def fetch(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(statement, params)
            return await cur.fetchall()

        return await self._read(fetch)

    async def _write_fetch(
        self, statement: q.Query, params: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        async def execute(conn: psycopg.AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(statement, params)
            return await cur.fetchall()

        return await self._run(execute)

    async def _rowcount(self, statement: q.Query, params: Sequence[Any]) -> int:
        async def execute(conn: psycopg.AsyncConnection[Any]) -> int:
            cur = await conn.execute(statement, params)
            return max(cur.rowcount, 0)

        return await self._run(execute)

    async def _read(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run a read, once more on a fresh connection if its connection broke.

        After a failover or an idle timeout the pool may hand out a dead connection; a
        read is safe to repeat, a write is not (it may have committed).
        """
        try:
            return await self._run(work, retry_lost_connection=True)
        except _LostConnection:
            logger.info("retrying a read after a lost connection to %s", self._target.host)
            return await self._run(work)

    async def _run(
        self,
        work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]],
        *,
        retry_lost_connection: bool = False,
    ) -> T:
        self._check_open()
        with db.database_errors(self._target):
            async with self._pool.connection() as conn:
                try:
                    return await work(conn)
                except psycopg.OperationalError:
                    if retry_lost_connection and conn.broken:
                        raise _LostConnection from None
                    raise

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(
                f"The pgvector collection '{self._collection}' is closed; open it again to use it."
            )

    def __repr__(self) -> str:
        return (
            f"PgVectorStore({self._collection!r}, {self._target.describe()}, "
            f"embedder={self._embedder.name!r})"
        )


class _LostConnection(Exception):
    """Internal: the connection broke before the read answered; another one may work."""


def _hit(row: Sequence[Any]) -> SearchHit:
    score = float(row[-1])
    return SearchHit(q.chunk_from_row(row), 0.0 if math.isnan(score) else score)

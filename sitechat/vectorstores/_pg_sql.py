"""The SQL of the pgvector store: names, schema, and every statement it runs.

Nothing a user or a web page wrote is ever spliced into SQL text: identifiers go through
``psycopg.sql.Identifier``, constants chosen by the operator (the text search
configuration, HNSW parameters) through ``sql.Literal``, and every value — chunk text,
filter keys and values, the keyword query — is a bound parameter.

PostgreSQL's ``text`` and ``jsonb`` cannot hold the NUL character, and a single one would
fail a whole write: :func:`without_nul` removes it from every value on the way in (chunk
fields, metadata, filters, keyword queries, ids and URLs looked up), so a chunk or a query
with NUL is stored and matched as if the NUL were not there.

One table per collection, because an HNSW index needs a fixed vector dimension and each
collection has its embedder's. ``collections`` is the manifest: which table holds which
collection, the format version, the embedder name and dimension, and the chunk count.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Optional, Union

from psycopg import sql
from psycopg.types.json import Jsonb

from sitechat._text import ENGLISH_STOPWORDS
from sitechat.errors import InvalidInputError
from sitechat.models import Chunk
from sitechat.vectorstores.base import page_of

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "CollectionNames",
    "Condition",
    "Query",
    "Statements",
    "chunk_from_row",
    "chunk_params",
    "collection_table_name",
    "filter_clause",
    "keyword_terms",
    "without_nul",
]

FORMAT_NAME = "sitechat-pgvector"
FORMAT_VERSION = 1
COLLECTIONS_TABLE = "collections"
# pgvector (0.6-0.7) indexes vectors of at most this many dimensions
MAX_INDEXED_DIMENSION = 2000
# up to this many dimensions (6 KB) vectors are kept inside the row, where a scan reads
# them directly, and the text moves to TOAST instead; beyond it a row could outgrow a page
MAX_INLINE_DIMENSION = 1536
# pgvector's ceiling for hnsw.ef_search; a larger k falls back to an exact scan
MAX_EF_SEARCH = 1000

_SLUG_RE = re.compile(r"[^a-z0-9]+")
_SLUG_CHARS = 24
_MAX_QUERY_WORDS = 64
_QUERY_WORD_RE = re.compile(r"\S+")

Query = Union[sql.SQL, sql.Composed]
Condition = Optional[sql.Composable]  # a WHERE condition, or None for every row

_CHUNK_COLUMNS = (
    "chunk_id",
    "url",
    "title",
    "heading_path",
    "anchor",
    "body",
    "content_hash",
    "page_hash",
    "metadata",
)
_WRITE_COLUMNS = (*_CHUNK_COLUMNS, "headings", "embedding")


def collection_table_name(collection: str) -> str:
    """A safe, short, stable table name for a collection name of any text.

    A readable slug keeps ``\\dt`` listings understandable; the hash of the exact name
    keeps ``docs-v1`` and ``docs_v1`` apart. At most 40 characters, so index names built
    from it stay within PostgreSQL's 63.
    """
    slug = _SLUG_RE.sub("_", collection.lower()).strip("_")[:_SLUG_CHARS].strip("_")
    digest = hashlib.sha256(collection.encode("utf-8")).hexdigest()[:8]
    return f"chunks_{slug}_{digest}" if slug else f"chunks_{digest}"


@dataclass(frozen=True, slots=True)
class CollectionNames:
    """The qualified identifiers one collection uses."""

    schema: str
    table: str

    @property
    def schema_id(self) -> sql.Identifier:
        return sql.Identifier(self.schema)

    @property
    def table_id(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def collections_id(self) -> sql.Identifier:
        return sql.Identifier(self.schema, COLLECTIONS_TABLE)

    def index_id(self, suffix: str) -> sql.Identifier:
        return sql.Identifier(f"{self.table}_{suffix}")


def _columns(names: Sequence[str], prefix: str = "") -> sql.Composable:
    return sql.SQL(", ").join(
        sql.Identifier(prefix, name) if prefix else sql.Identifier(name) for name in names
    )


class Statements:
    """Every statement for one collection, composed once when the store opens."""

    def __init__(self, names: CollectionNames, text_search_config: str) -> None:
        self.names = names
        table = names.table_id
        config = sql.Literal(text_search_config)
        self.config = config
        columns = _columns(_CHUNK_COLUMNS)
        self.columns = columns
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
            for name in _WRITE_COLUMNS
            if name != "chunk_id"
        )
        self.upsert = sql.SQL(
            "INSERT INTO {table} ({columns}) VALUES ({values}) "
            "ON CONFLICT (chunk_id) DO UPDATE SET {assignments}"
        ).format(
            table=table,
            columns=_columns(_WRITE_COLUMNS),
            values=sql.SQL(", ").join(sql.Placeholder() for _ in _WRITE_COLUMNS),
            assignments=assignments,
        )
        self.get = sql.SQL("SELECT {columns} FROM {table} WHERE chunk_id = ANY(%s)").format(
            columns=columns, table=table
        )
        self.delete_ids = sql.SQL("DELETE FROM {table} WHERE chunk_id = ANY(%s)").format(
            table=table
        )
        self.delete_url = sql.SQL("DELETE FROM {table} WHERE url = %s").format(table=table)
        self.hashes_all = sql.SQL("SELECT chunk_id, content_hash FROM {table}").format(table=table)
        self.hashes_url = sql.SQL(
            "SELECT chunk_id, content_hash FROM {table} WHERE url = %s"
        ).format(table=table)
        self.urls = sql.SQL("SELECT DISTINCT url FROM {table} ORDER BY url").format(table=table)
        self.count = sql.SQL("SELECT count(*) FROM {table}").format(table=table)
        # params: page URLs, collection name; the row with a NULL url carries the total
        # the collection recorded at its last save (a scan of the table would be slow)
        self.page_sizes = sql.SQL(
            "SELECT url, count(*) FROM {table} WHERE url = ANY(%s) GROUP BY url "
            "UNION ALL SELECT NULL, chunk_count FROM {collections} WHERE name = %s"
        ).format(table=table, collections=names.collections_id)
        self.record_count = sql.SQL(
            "UPDATE {collections} SET chunk_count = (SELECT count(*) FROM {table}), "
            "updated_at = now() WHERE name = %s RETURNING chunk_count"
        ).format(collections=names.collections_id, table=table)
        self.analyze = sql.SQL("ANALYZE {table}").format(table=table)
        self.hnsw_name = f"{names.table}_hnsw"
        self.has_hnsw = sql.SQL(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = %s"
        )
        # vectors of another length, or not of length 1 (nor 0: an all-zero embedding)
        # params: dimension, tolerance; returns both counts and one chunk id as an example
        self.odd_vectors = sql.SQL(
            "SELECT count(*) FILTER (WHERE wrong_size), count(*) FILTER (WHERE off_unit), "
            "min(chunk_id) FILTER (WHERE wrong_size OR off_unit) FROM ("
            "SELECT chunk_id, vector_dims(embedding) <> %s AS wrong_size, "
            "vector_norm(embedding) > 0 AND abs(vector_norm(embedding) - 1) > %s AS off_unit "
            "FROM {table}) AS checked"
        ).format(table=table)
        # indexes a failed build left behind (PostgreSQL then ignores them); params:
        # schema, table
        self.invalid_indexes = sql.SQL(
            "SELECT ic.relname FROM pg_index i "
            "JOIN pg_class ic ON ic.oid = i.indexrelid "
            "JOIN pg_class t ON t.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = %s AND t.relname = %s AND NOT (i.indisvalid AND i.indisready) "
            "ORDER BY 1"
        )

    def create_hnsw(self, m: int, ef_construction: int) -> sql.Composed:
        """The HNSW index over the vectors, for cosine distance.

        Built in one pass once the collection is big enough to need it: PostgreSQL builds
        a graph in bulk an order of magnitude faster than it inserts rows into one, and
        below a few thousand rows an exact scan takes a few milliseconds anyway.
        """
        return sql.SQL(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = {}, ef_construction = {})"
        ).format(
            sql.Identifier(self.hnsw_name),
            self.names.table_id,
            sql.Literal(m),
            sql.Literal(ef_construction),
        )

    # ------------------------------------------------------------------ searches

    def nearest(self, condition: Condition, *, exact: bool) -> sql.Composed:
        """The ``k`` rows nearest ``%(vector)s`` by cosine distance, passing ``condition``.

        The approximate form lets the planner use the HNSW index (and pgvector filters
        its candidates afterwards, so a selective filter may return fewer than ``k``);
        the exact form sorts every passing row, through a subquery the index cannot see.
        """
        where = sql.SQL(" WHERE {}").format(condition) if condition is not None else sql.SQL("")
        if exact:
            return sql.SQL(
                "SELECT {columns}, 1 - distance FROM ("
                "SELECT {columns}, embedding <=> %(vector)s AS distance FROM {table}{where} "
                "OFFSET 0) AS passing ORDER BY distance LIMIT %(k)s"
            ).format(columns=self.columns, table=self.names.table_id, where=where)
        return sql.SQL(
            "SELECT {columns}, 1 - (embedding <=> %(vector)s) FROM {table}{where} "
            "ORDER BY embedding <=> %(vector)s LIMIT %(k)s"
        ).format(columns=self.columns, table=self.names.table_id, where=where)

    def keyword(self, condition: Condition) -> sql.Composed:
        """Full-text search for the words ``%(words)s`` (a text array), best first.

        See ``_KEYWORD_SQL``: each word is parsed by ``plainto_tsquery`` (plain text, no
        operators), weighted by its rarity, and a passage scores the rarity of the words
        it contains plus their ``ts_rank`` (title A, headings B, text C).
        """
        extra = sql.SQL(" AND {}").format(condition) if condition is not None else sql.SQL("")
        return sql.SQL(_KEYWORD_SQL).format(
            schema=sql.Literal(self.names.schema),
            table_name=sql.Literal(self.names.table),
            config=self.config,
            unknown_share=sql.Literal(_UNKNOWN_SHARE),
            rare_share=sql.Literal(_RARE_SHARE),
            rank_weight=sql.Literal(_RANK_WEIGHT),
            columns=_columns(_CHUNK_COLUMNS, "c"),
            table=self.names.table_id,
            extra=extra,
        )


# PostgreSQL's rankers know nothing of how common a word is, and ranked alone they let
# keyword-dense passages (indexes, tables of contents) win: recall@5 0.58 on the Python
# docs questions in examples/eval, where BM25 gets 0.85. Weighting each matched word by
# its rarity (an IDF) brings it to 0.85. The rarity comes free from the planner's
# statistics of the tsvector column (pg_stats.most_common_elems, kept by ANALYZE); a word
# missing there is rarer than every listed one. Only passages with a rare-enough word are
# ranked, which keeps a query with common words from ranking a third of the collection.
_UNKNOWN_SHARE = 0.001  # a word's share of passages when there are no statistics yet
_RARE_SHARE = 0.05  # candidates contain a word in at most 5% of passages (or the rarest)
_RANK_WEIGHT = 4.0  # ts_rank is below ~0.1 per word; this lets field and frequency count
_KEYWORD_SQL = """
WITH stats AS (
    SELECT most_common_elems::text::text[] AS lexemes, most_common_elem_freqs AS shares
    FROM pg_stats
    WHERE schemaname = {schema} AND tablename = {table_name} AND attname = 'search'
), words AS (
    SELECT query, share, ln(1 + (1 - share + 0.0001) / (share + 0.0001)) AS idf
    FROM (
        SELECT plainto_tsquery({config}, word) AS query,
            coalesce(
                (SELECT max(s.shares[array_position(s.lexemes, lexeme)])
                 FROM stats AS s,
                     unnest(tsvector_to_array(to_tsvector({config}, word))) AS lexeme),
                (SELECT s.shares[array_length(s.lexemes, 1) + 1] / 2 FROM stats AS s),
                {unknown_share}
            ) AS share
        FROM unnest(%(words)s::text[]) AS word
    ) AS parsed
    WHERE numnode(query) > 0
), query AS (
    SELECT
        (SELECT string_agg(querytree(query), ' | ') FROM words
         WHERE share <= greatest({rare_share}, (SELECT min(share) * 1.5 FROM words))
        )::tsquery AS candidates,
        (SELECT string_agg(querytree(query), ' | ') FROM words)::tsquery AS every_word
)
SELECT {columns},
    (SELECT sum(words.idf) FROM words WHERE c.search @@ words.query)
    + {rank_weight} * ts_rank(c.search, query.every_word) AS score
FROM {table} AS c CROSS JOIN query
WHERE c.search @@ query.candidates{extra}
ORDER BY score DESC, c.chunk_id
LIMIT %(k)s
"""


# ---------------------------------------------------------------------- DDL


def create_schema_statements(schema: str) -> list[sql.Composed]:
    """The schema and its manifest table (idempotent)."""
    names = CollectionNames(schema, COLLECTIONS_TABLE)
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(names.schema_id),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "name text PRIMARY KEY, "
            "table_name text NOT NULL UNIQUE, "
            "format text NOT NULL, "
            "format_version integer NOT NULL, "
            "embedder_name text NOT NULL, "
            "embedder_dimension integer NOT NULL CHECK (embedder_dimension > 0), "
            "text_search_config text NOT NULL, "
            "chunk_count bigint NOT NULL DEFAULT 0, "
            "created_at timestamptz NOT NULL DEFAULT now(), "
            "updated_at timestamptz NOT NULL DEFAULT now())"
        ).format(names.collections_id),
    ]


def create_collection_statements(
    names: CollectionNames, dimension: int, text_search_config: str
) -> list[sql.Composed]:
    """The chunk table of one collection and its indexes, except HNSW (see ``create_hnsw``)."""
    config = sql.Literal(text_search_config)
    search = sql.SQL(
        "setweight(to_tsvector({c}::regconfig, title), 'A') || "
        "setweight(to_tsvector({c}::regconfig, headings), 'B') || "
        "setweight(to_tsvector({c}::regconfig, body), 'C')"
    ).format(c=config)
    table = names.table_id
    statements = [
        sql.SQL(
            "CREATE TABLE {table} ("
            "chunk_id text PRIMARY KEY, "
            "url text NOT NULL, "
            "title text NOT NULL, "
            "heading_path text[] NOT NULL, "
            "headings text NOT NULL, "
            "anchor text, "
            "body text NOT NULL, "
            "content_hash text NOT NULL, "
            "page_hash text NOT NULL, "
            "metadata jsonb NOT NULL DEFAULT '{{}}', "
            "embedding vector({dimension}) NOT NULL, "
            "search tsvector GENERATED ALWAYS AS ({search}) STORED)"
        ).format(table=table, dimension=sql.Literal(dimension), search=search),
        sql.SQL("CREATE INDEX {} ON {} (url)").format(names.index_id("url"), table),
        sql.SQL("CREATE INDEX {} ON {} USING gin (search)").format(names.index_id("fts"), table),
        sql.SQL("CREATE INDEX {} ON {} USING gin (metadata jsonb_path_ops)").format(
            names.index_id("meta"), table
        ),
    ]
    if dimension <= MAX_INLINE_DIMENSION:
        # pgvector's default (EXTERNAL) moves a 384-float vector out of a row that also
        # holds a chunk of text: an exact scan then costs six page reads per row, not one
        statements.append(
            sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STORAGE PLAIN").format(table)
        )
    return statements


def collection_row_query(schema: str) -> sql.Composed:
    return sql.SQL(
        "SELECT table_name, format, format_version, embedder_name, embedder_dimension, "
        "text_search_config FROM {} WHERE name = %s"
    ).format(CollectionNames(schema, COLLECTIONS_TABLE).collections_id)


def lock_collection_statement(names: CollectionNames) -> sql.Composed:
    """Lock a collection's chunk table against every other reader and writer until the
    transaction ends (a writer inserting meanwhile waits, then finds the table changed)."""
    return sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names.table_id)


def holds_chunks_query(names: CollectionNames) -> sql.Composed:
    """Whether a collection's chunk table holds any row (one ``bool``)."""
    return sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(names.table_id)


def drop_collection_statement(names: CollectionNames) -> sql.Composed:
    """Drop a collection's chunk table, its indexes with it."""
    return sql.SQL("DROP TABLE {}").format(names.table_id)


def delete_collection_statement(schema: str) -> sql.Composed:
    """Remove the manifest row of the collection named ``%s``."""
    return sql.SQL("DELETE FROM {} WHERE name = %s").format(
        CollectionNames(schema, COLLECTIONS_TABLE).collections_id
    )


def insert_collection_statement(schema: str) -> sql.Composed:
    return sql.SQL(
        "INSERT INTO {} (name, table_name, format, format_version, embedder_name, "
        "embedder_dimension, text_search_config) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    ).format(CollectionNames(schema, COLLECTIONS_TABLE).collections_id)


# ---------------------------------------------------------------------- values


def without_nul(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL text cannot store."""
    return text.replace("\x00", "") if "\x00" in text else text


def filter_clause(where: Mapping[str, str] | None) -> tuple[Condition, dict[str, Any]]:
    """The condition keeping chunks whose ``url`` and metadata equal every given value.

    Metadata is matched with ``jsonb @>`` (served by a GIN index): one JSON object built
    from the filter, passed as a parameter, so neither keys nor values reach the SQL.
    """
    if not where:
        return None, {}
    metadata: dict[str, str] = {}
    url: str | None = None
    for key, value in where.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInputError(
                f"Search filters map names to strings; got {key!r}: {value!r}. "
                "Pass values as strings."
            )
        if key == "url":
            url = without_nul(page_of(value))
        else:
            metadata[without_nul(key)] = without_nul(value)
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if url is not None:
        clauses.append(sql.SQL("url = %(filter_url)s"))
        params["filter_url"] = url
    if metadata:
        clauses.append(sql.SQL("metadata @> %(filter_metadata)s"))
        params["filter_metadata"] = Jsonb(metadata)
    return sql.SQL(" AND ").join(clauses), params


def keyword_terms(query: str) -> list[str]:
    """The words of a keyword query, each searched on its own and OR-ed.

    Words are split on whitespace only, so ``os.path.join`` or ``3.11`` reach PostgreSQL's
    parser whole and match the lexemes it made from the documents. Common English words
    are dropped when others remain: they match nearly every passage and slow the ranking.
    """
    seen: dict[str, None] = {}
    for word in _QUERY_WORD_RE.findall(without_nul(query).lower()):
        seen.setdefault(word, None)
        if len(seen) >= _MAX_QUERY_WORDS:
            break
    words = [w for w in seen if w.strip(".,;:!?'\"()[]") not in ENGLISH_STOPWORDS]
    return words or list(seen)


def chunk_params(chunk: Chunk, vector: Any) -> tuple[Any, ...]:
    """The ``Statements.upsert`` parameters for one chunk, in ``_WRITE_COLUMNS`` order,
    without NUL characters (see the module docstring)."""
    headings = [without_nul(h) for h in chunk.heading_path]
    return (
        without_nul(chunk.id),
        without_nul(chunk.url),
        without_nul(chunk.title),
        headings,
        None if chunk.anchor is None else without_nul(chunk.anchor),
        without_nul(chunk.text),
        without_nul(chunk.content_hash),
        without_nul(chunk.page_hash),
        Jsonb({without_nul(str(k)): without_nul(str(v)) for k, v in chunk.metadata.items()}),
        "\n".join(headings),
        vector,
    )


def chunk_from_row(row: Sequence[Any]) -> Chunk:
    """A :class:`Chunk` from the first ``len(_CHUNK_COLUMNS)`` values of a row."""
    chunk_id, url, title, heading_path, anchor, body, c_hash, p_hash, metadata = row[:9]
    return Chunk(
        id=chunk_id,
        url=url,
        title=title,
        heading_path=tuple(str(h) for h in heading_path or ()),
        anchor=anchor,
        text=body,
        content_hash=c_hash,
        page_hash=p_hash,
        metadata=MappingProxyType({str(k): str(v) for k, v in (metadata or {}).items()}),
    )

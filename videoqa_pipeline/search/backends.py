"""Where search reads stored embeddings: PostgreSQL (pgvector or ``real[]``) or Parquet blobs.

Every backend answers the same questions, so :class:`~videoqa_pipeline.search.retrieval.Searcher`
does not care where the pipeline stored its tables:

* ``vector_hits``: nearest items to a query vector (cosine), same model and dimension only;
* ``embedding_models``: which models made the stored vectors (search refuses to mix them);
* ``text_hits``: items whose text matches the query's terms, best first;
* ``keyframes``: keyframe timestamps and blob keys of some videos;
* ``video_blob_key``: the normalized video a player should load.

PostgreSQL with pgvector orders by ``embedding::vector(N) <=> query`` with ``dimension = N`` as
literals, the exact expression and predicate of the HNSW indexes of migration 4, so the planner
can use them. Without the extension, vectors are streamed in batches from a server-side cursor
and scored with numpy (exact, bounded memory). The Parquet backend (``METADATA_STORAGE=s3``) loads
each video's embeddings table from the blob store and scores in memory.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import Counter
from typing import Any, Protocol

import numpy as np
import psycopg
from psycopg import sql

from videoqa_pipeline.search.text_query import (
    MAX_TERMS,
    query_terms,
    required_matches,
    text_tokens,
    tsquery_text,
)
from videoqa_pipeline.search.types import Hit, SearchFilters
from videoqa_pipeline.storage.blobs import BlobStore
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.errors import BlobNotFoundError
from videoqa_pipeline.storage.schema import EMBEDDINGS, KEYFRAMES, NORMALIZED_VIDEO

logger = logging.getLogger(__name__)

#: Rows per batch when scanning ``real[]`` vectors without pgvector.
SCAN_BATCH_ROWS = 2000


class SearchBackend(Protocol):
    """Stored embeddings, keyframes and videos, as search needs them."""

    def vector_hits(self, vector: np.ndarray, model: str, filters: SearchFilters, limit: int) -> list[Hit]:
        """Up to ``limit`` items nearest to ``vector`` (cosine), best first, ``similarity`` set."""
        ...

    def text_hits(
        self,
        query: str,
        filters: SearchFilters,
        limit: int,
        vector: np.ndarray | None = None,
        model: str | None = None,
    ) -> list[Hit]:
        """Up to ``limit`` items matching ``query``'s terms, best first; ``similarity`` set when
        ``vector`` (the query's embedding, made by ``model``) has the item's dimension and model."""
        ...

    def embedding_models(self, filters: SearchFilters) -> set[str]:
        """Names of the embedding models whose vectors are stored for the filtered videos."""
        ...

    def videos_by_model(self, filters: SearchFilters) -> dict[str, list[str]]:
        """``model -> sorted video ids`` of the filtered videos (slower; for error messages)."""
        ...

    def keyframes(self, video_ids: list[str]) -> dict[str, list[tuple[float, str]]]:
        """``video_id -> [(timestamp_seconds, blob_key), ...]`` sorted by time."""
        ...

    def video_blob_key(self, video_id: str) -> str | None:
        """Blob key of the normalized video (None when the video is unknown)."""
        ...


def _unit(vector: np.ndarray) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 0 else array


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{value:.9g}" for value in vector.tolist()) + "]"


#: Candidate-list size of the HNSW search per requested row. On 100k clustered vectors, the
#: share of the exact top 10 found was 0.49 with pgvector's default (40), 0.71 with 100 and
#: 0.82 with 200 (four per row for a search's 50 candidates), for about 1 ms more.
HNSW_EF_PER_ROW = 4


def hnsw_ef_search(limit: int) -> int:
    """``hnsw.ef_search`` for a query asking for ``limit`` rows (pgvector accepts 1-1000)."""
    return max(100, min(1000, limit * HNSW_EF_PER_ROW))


class PostgresSearchBackend:
    """Search over ``videoqa_embeddings`` in PostgreSQL, with or without pgvector."""

    def __init__(self, database: Database) -> None:
        """Args:
        database: The metadata database the pipeline writes (schema migrated on first use).
        """
        self.database = database

    def _filters(self, filters: SearchFilters) -> tuple[list[sql.Composable], list[Any]]:
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        if filters.video_ids:
            clauses.append(sql.SQL("video_id = ANY(%s)"))
            params.append(list(filters.video_ids))
        if filters.start_seconds is not None:
            clauses.append(sql.SQL("end_seconds >= %s"))
            params.append(filters.start_seconds)
        if filters.end_seconds is not None:
            clauses.append(sql.SQL("start_seconds <= %s"))
            params.append(filters.end_seconds)
        return clauses, params

    def vector_hits(self, vector: np.ndarray, model: str, filters: SearchFilters, limit: int) -> list[Hit]:
        """Nearest items by cosine; see :class:`SearchBackend`."""
        self.database.ensure_schema()
        query_vector = _unit(vector)
        if self.database.has_pgvector:
            return self._pgvector_hits(query_vector, model, filters, limit)
        return self._numpy_hits(query_vector, model, filters, limit)

    def _pgvector_hits(self, vector: np.ndarray, model: str, filters: SearchFilters, limit: int) -> list[Hit]:
        dimension = int(vector.size)
        cast = sql.SQL("(embedding::vector({}))").format(sql.Literal(dimension))
        clauses, params = self._filters(filters)
        where = sql.SQL(" AND ").join(
            [sql.SQL("dimension = {}").format(sql.Literal(dimension)), sql.SQL("model = %s"), *clauses]
        )
        query = sql.SQL(
            """SELECT video_id, item_index, kind, start_seconds, end_seconds, text,
                      {cast} <=> %s::vector({dim}) AS distance
               FROM videoqa_embeddings WHERE {where}
               ORDER BY {cast} <=> %s::vector({dim}) LIMIT %s"""
        ).format(cast=cast, dim=sql.Literal(dimension), where=where)
        literal = _vector_literal(vector)
        with self.database.connection() as conn, conn.transaction():
            # Filters are applied after the index scan; let pgvector (0.8+) keep scanning until
            # enough rows pass them instead of returning fewer than asked.
            conn.execute(f"SET LOCAL hnsw.ef_search = {hnsw_ef_search(limit)}")
            if clauses:
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = conn.execute(query, [literal, model, *params, literal, limit]).fetchall()
        hits = [
            Hit(
                row[0],
                int(row[1]),
                row[2],
                float(row[3]),
                float(row[4]),
                row[5],
                similarity=1.0 - float(row[6]),
            )
            for row in rows
        ]
        # relaxed_order may return rows slightly out of order: re-sort by the exact distance.
        hits.sort(key=lambda hit: -(hit.similarity or 0.0))
        return hits

    def _numpy_hits(self, vector: np.ndarray, model: str, filters: SearchFilters, limit: int) -> list[Hit]:
        clauses, params = self._filters(filters)
        where = sql.SQL(" AND ").join([sql.SQL("dimension = %s"), sql.SQL("model = %s"), *clauses])
        scan = sql.SQL("SELECT video_id, item_index, embedding FROM videoqa_embeddings WHERE {}").format(
            where
        )
        best: list[tuple[float, str, int]] = []  # min-heap of (similarity, video_id, item_index)
        with self.database.connection() as conn, conn.transaction():
            with conn.cursor(name="videoqa_search_scan") as cursor:
                cursor.itersize = SCAN_BATCH_ROWS
                cursor.execute(scan, [int(vector.size), model, *params])
                while True:
                    rows = cursor.fetchmany(SCAN_BATCH_ROWS)
                    if not rows:
                        break
                    matrix = np.asarray([row[2] for row in rows], dtype=np.float32)
                    norms = np.linalg.norm(matrix, axis=1)
                    norms[norms == 0] = 1.0
                    similarities = (matrix @ vector) / norms
                    top = np.argsort(-similarities)[:limit]
                    for position in top:
                        entry = (float(similarities[position]), rows[position][0], int(rows[position][1]))
                        if len(best) < limit:
                            heapq.heappush(best, entry)
                        elif entry > best[0]:
                            heapq.heapreplace(best, entry)
            ranked = sorted(best, reverse=True)
            if not ranked:
                return []
            details = conn.execute(
                """SELECT video_id, item_index, kind, start_seconds, end_seconds, text
                   FROM videoqa_embeddings e
                   JOIN unnest(%s::text[], %s::int[]) AS wanted(v, i) ON e.video_id = v AND e.item_index = i""",
                ([entry[1] for entry in ranked], [entry[2] for entry in ranked]),
            ).fetchall()
        by_key = {(row[0], int(row[1])): row for row in details}
        hits: list[Hit] = []
        for similarity, video_id, item_index in ranked:
            row = by_key.get((video_id, item_index))
            if row is not None:  # rewritten between the two queries: skip it
                hits.append(
                    Hit(video_id, item_index, row[2], float(row[3]), float(row[4]), row[5], similarity)
                )
        return hits

    def embedding_models(self, filters: SearchFilters) -> set[str]:
        """Distinct models; without a video filter a loose index scan of the ``(model, dimension)``
        index (one index probe per model, well under a millisecond at 100k rows), so every
        search can afford it."""
        self.database.ensure_schema()
        with self.database.connection() as conn:
            if filters.video_ids:
                rows = conn.execute(
                    "SELECT DISTINCT model FROM videoqa_embeddings WHERE video_id = ANY(%s)",
                    (list(filters.video_ids),),
                ).fetchall()
            else:
                rows = conn.execute(
                    """WITH RECURSIVE models AS (
                           (SELECT model FROM videoqa_embeddings ORDER BY model LIMIT 1)
                           UNION ALL
                           SELECT (SELECT e.model FROM videoqa_embeddings e WHERE e.model > m.model
                                   ORDER BY e.model LIMIT 1)
                           FROM models m WHERE m.model IS NOT NULL
                       )
                       SELECT model FROM models WHERE model IS NOT NULL"""
                ).fetchall()
        return {str(row[0]) for row in rows}

    def videos_by_model(self, filters: SearchFilters) -> dict[str, list[str]]:
        """Videos per stored model (a full scan of the filtered rows)."""
        self.database.ensure_schema()
        clauses, params = self._filters(SearchFilters(video_ids=filters.video_ids))
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
        statement = sql.SQL(
            "SELECT model, array_agg(DISTINCT video_id ORDER BY video_id) FROM videoqa_embeddings{} GROUP BY model"
        ).format(where)
        with self.database.connection() as conn:
            rows = conn.execute(statement, params).fetchall()
        return {str(row[0]): list(row[1]) for row in rows}

    def _similarity_column(
        self, vector: np.ndarray | None, model: str | None
    ) -> tuple[sql.Composable, list[Any]]:
        """The similarity of each text hit to the query (for "not found" decisions), with its
        parameters: computed by pgvector in the query; without it, the vector itself is fetched
        (compared in numpy). Only rows of the query's ``model`` are comparable."""
        if vector is None:
            return sql.SQL("NULL::real"), []
        same_model = sql.SQL("TRUE") if model is None else sql.SQL("model = {}").format(sql.Literal(model))
        if not self.database.has_pgvector:
            return sql.SQL("CASE WHEN {same} THEN embedding::real[] END").format(same=same_model), []
        dimension = sql.Literal(int(vector.size))
        similarity = sql.SQL(
            "CASE WHEN dimension = {d} AND {same} THEN 1 - ((embedding::vector({d})) <=> %s::vector({d})) END"
        ).format(d=dimension, same=same_model)
        return similarity, [_vector_literal(vector)]

    def text_hits(
        self,
        query: str,
        filters: SearchFilters,
        limit: int,
        vector: np.ndarray | None = None,
        model: str | None = None,
    ) -> list[Hit]:
        """Items whose ``search_tsv`` matches the query's terms: most terms first, then by ``ts_rank``.

        ``ts_rank`` rather than ``ts_rank_cd``: on 100k rows the cover-density rank took half of
        the query's time (p95 37 ms against 16 ms with ``ts_rank``, server side), and chunks of a
        few sentences gain little from proximity. The similarity to the query vector is computed
        for the returned rows only, after the LIMIT (a materialized CTE keeps it there), and only
        for rows of the query's ``model`` (when given): other models' vectors are not comparable.
        """
        expression = tsquery_text(query)
        if expression is None:
            return []
        vector = None if vector is None else _unit(vector)
        self.database.ensure_schema()
        clauses, params = self._filters(filters)
        where = sql.SQL(" AND ").join([sql.SQL("search_tsv @@ q"), *clauses])
        in_sql = vector is not None and self.database.has_pgvector
        similarity, similarity_params = self._similarity_column(vector, model)
        # Items must contain several of the query's terms (see text_query.required_matches): one
        # common word ("long", "time") shared with a question is noise that would outvote vectors.
        terms = query_terms(query)[:MAX_TERMS]
        coverage = sql.SQL(" + ").join(
            sql.SQL("(search_tsv @@ to_tsquery('simple', %s))::int") for _ in terms
        )
        statement = sql.SQL(
            """WITH best AS MATERIALIZED (
                   SELECT * FROM (
                       SELECT video_id, item_index, kind, start_seconds, end_seconds, text, dimension,
                              model, embedding, {coverage} AS matched, ts_rank(search_tsv, q) AS rank
                       FROM videoqa_embeddings, to_tsquery('simple', %s) AS q
                       WHERE {where}
                   ) AS found
                   WHERE matched >= %s
                   ORDER BY matched DESC, rank DESC, video_id, item_index LIMIT %s
               )
               SELECT video_id, item_index, kind, start_seconds, end_seconds, text, {similarity}
               FROM best ORDER BY matched DESC, rank DESC, video_id, item_index"""
        ).format(similarity=similarity, coverage=coverage, where=where)
        params = [
            *(f"{term}:*" for term in terms),
            expression,
            *params,
            required_matches(len(terms)),
            limit,
            *similarity_params,
        ]
        try:
            with self.database.connection() as conn:
                rows = conn.execute(statement, params).fetchall()
        except psycopg.errors.SyntaxError as error:  # cannot happen with sanitised terms; never fail a search
            logger.warning("full-text query %r rejected: %s", expression, error)
            return []
        return [
            Hit(
                row[0],
                int(row[1]),
                row[2],
                float(row[3]),
                float(row[4]),
                row[5],
                (None if row[6] is None else float(row[6])) if in_sql else _cosine(vector, row[6]),
            )
            for row in rows
        ]

    def keyframes(self, video_ids: list[str]) -> dict[str, list[tuple[float, str]]]:
        """Keyframes of ``video_ids``, sorted by time."""
        if not video_ids:
            return {}
        self.database.ensure_schema()
        with self.database.connection() as conn:
            rows = conn.execute(
                f"""SELECT video_id, timestamp_seconds, blob_key FROM {KEYFRAMES.name}
                    WHERE video_id = ANY(%s) ORDER BY video_id, timestamp_seconds""",
                (video_ids,),
            ).fetchall()
        found: dict[str, list[tuple[float, str]]] = {}
        for video_id, timestamp, key in rows:
            found.setdefault(video_id, []).append((float(timestamp), key))
        return found

    def video_blob_key(self, video_id: str) -> str | None:
        """Blob key of the normalized video of ``video_id``."""
        self.database.ensure_schema()
        with self.database.connection() as conn:
            row = conn.execute(
                f"SELECT video_blob_key FROM {NORMALIZED_VIDEO.name} WHERE video_id = %s", (video_id,)
            ).fetchone()
        return None if row is None else str(row[0])


def _cosine(query_vector: np.ndarray | None, stored: Any) -> float | None:
    """Cosine of a unit query vector and a stored vector; None when unknown or sizes differ."""
    if query_vector is None or stored is None:
        return None
    array = np.asarray(stored, dtype=np.float32)
    if array.size != query_vector.size:
        return None
    norm = float(np.linalg.norm(array))
    return float(array @ query_vector) / norm if norm > 0 else 0.0


def _parquet_hit(video_id: str, row: Any, similarity: float | None) -> Hit:
    """A hit from one row of a video's Parquet embeddings table."""
    return Hit(
        video_id,
        int(row.item_index),
        row.kind,
        float(row.start_seconds),
        float(row.end_seconds),
        row.text,
        similarity,
    )


class ParquetSearchBackend:
    """Search over the Parquet tables of ``METADATA_STORAGE=s3`` (or any blob store).

    Each search reads every video's embeddings table (``<video_id>/tables/videoqa_embeddings.parquet``);
    fine for a few thousand items, and the only option without a database. Text matching scores
    items by the inverse document frequency of the query terms they contain (prefix match).
    """

    def __init__(self, store: BlobStore) -> None:
        """Args:
        store: The blob store holding the Parquet tables.
        """
        self.store = store

    def _video_ids(self, filters: SearchFilters) -> list[str]:
        if filters.video_ids:
            return list(filters.video_ids)
        suffix = f"/tables/{EMBEDDINGS.name}.parquet"
        return sorted(key[: -len(suffix)] for key in self.store.list_keys("") if key.endswith(suffix))

    def _items(self, filters: SearchFilters) -> list[tuple[str, Any]]:
        from videoqa_pipeline.storage.parquet_tables import read_partition

        items: list[tuple[str, Any]] = []
        for video_id in self._video_ids(filters):
            try:
                frame = read_partition(self.store, EMBEDDINGS, video_id)
            except BlobNotFoundError:
                continue
            for row in frame.itertuples(index=False):
                if filters.start_seconds is not None and row.end_seconds < filters.start_seconds:
                    continue
                if filters.end_seconds is not None and row.start_seconds > filters.end_seconds:
                    continue
                items.append((video_id, row))
        return items

    def vector_hits(self, vector: np.ndarray, model: str, filters: SearchFilters, limit: int) -> list[Hit]:
        """Nearest items by cosine, exact."""
        query_vector = _unit(vector)
        candidates = [
            (video_id, row)
            for video_id, row in self._items(filters)
            if row.model == model and int(row.dimension) == query_vector.size
        ]
        if not candidates:
            return []
        matrix = np.asarray([row.embedding for _, row in candidates], dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1)
        norms[norms == 0] = 1.0
        similarities = (matrix @ query_vector) / norms
        order = np.argsort(-similarities)[:limit]
        return [_parquet_hit(candidates[i][0], candidates[i][1], float(similarities[i])) for i in order]

    def embedding_models(self, filters: SearchFilters) -> set[str]:
        """Distinct models of the filtered videos' embeddings tables."""
        return set(self.videos_by_model(filters))

    def videos_by_model(self, filters: SearchFilters) -> dict[str, list[str]]:
        """Videos per stored model, from the filtered videos' embeddings tables."""
        found: dict[str, set[str]] = {}
        for video_id, row in self._items(SearchFilters(video_ids=filters.video_ids)):
            found.setdefault(str(row.model), set()).add(video_id)
        return {model: sorted(videos) for model, videos in found.items()}

    def text_hits(
        self,
        query: str,
        filters: SearchFilters,
        limit: int,
        vector: np.ndarray | None = None,
        model: str | None = None,
    ) -> list[Hit]:
        """Items containing the query's terms, scored by summed IDF; similarity for ``model``'s rows."""
        terms = query_terms(query)
        if not terms:
            return []
        items = self._items(filters)
        token_sets = [set(text_tokens(row.text)) for _, row in items]
        matches: list[set[str]] = []
        document_frequency: Counter[str] = Counter()
        for tokens in token_sets:
            matched = {term for term in terms if any(token.startswith(term) for token in tokens)}
            matches.append(matched)
            document_frequency.update(matched)
        total = max(1, len(items))
        required = required_matches(len(terms))
        scored = []
        for position, matched in enumerate(matches):
            if len(matched) >= required:
                score = sum(math.log(1 + total / document_frequency[term]) for term in matched)
                scored.append((len(matched), score, position))
        scored.sort(key=lambda entry: (-entry[0], -entry[1], entry[2]))
        query_vector = None if vector is None else _unit(vector)
        return [
            _parquet_hit(
                items[p][0],
                items[p][1],
                _cosine(query_vector, items[p][1].embedding)
                if model is None or items[p][1].model == model
                else None,
            )
            for _, _, p in scored[:limit]
        ]

    def keyframes(self, video_ids: list[str]) -> dict[str, list[tuple[float, str]]]:
        """Keyframes of ``video_ids`` from their Parquet keyframes tables."""
        from videoqa_pipeline.storage.parquet_tables import read_partition

        found: dict[str, list[tuple[float, str]]] = {}
        for video_id in video_ids:
            try:
                frame = read_partition(self.store, KEYFRAMES, video_id)
            except BlobNotFoundError:
                continue
            found[video_id] = sorted(
                (float(row.timestamp_seconds), str(row.blob_key)) for row in frame.itertuples(index=False)
            )
        return found

    def video_blob_key(self, video_id: str) -> str | None:
        """Blob key of the normalized video, from its Parquet table."""
        from videoqa_pipeline.storage.parquet_tables import read_partition

        try:
            frame = read_partition(self.store, NORMALIZED_VIDEO, video_id)
        except BlobNotFoundError:
            return None
        return None if frame.empty else str(frame["video_blob_key"].iloc[0])

"""Search and ask over everything the pipeline stored.

* :class:`Searcher` finds **moments** (video, start-end, transcript, on-screen text, keyframe) by
  hybrid retrieval: vector similarity fused with full-text search by reciprocal rank.
* :func:`ask` answers a question from those moments with ``[video_id @ mm:ss]`` citations:
  extractive offline, a chat completion with OpenAI.

:func:`searcher_for` and :func:`answerer_for` build both from the deployment's settings, so the
CLI and the HTTP service search exactly what the pipeline wrote. No Dagster import here.
"""

from __future__ import annotations

from collections.abc import Mapping

from videoqa_pipeline.ai.config import AIConfig
from videoqa_pipeline.ai.registry import get_embedder
from videoqa_pipeline.search.answer import (
    DEFAULT_CHAT_MODEL,
    DEFAULT_MIN_SIMILARITY,
    NOT_FOUND,
    Answer,
    Answerer,
    Citation,
    ExtractiveAnswerer,
    OpenAIAnswerer,
    ask,
    parse_citations,
)
from videoqa_pipeline.search.backends import ParquetSearchBackend, PostgresSearchBackend, SearchBackend
from videoqa_pipeline.search.retrieval import SEARCH_MODES, Searcher, SearchResult, fuse, group_into_moments
from videoqa_pipeline.search.types import (
    Hit,
    Moment,
    SearchError,
    SearchFilters,
    format_relevance,
    format_timestamp,
)
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.blobs import BlobStore, LocalBlobStore
from videoqa_pipeline.storage.database import DatabaseSettings, get_database

__all__ = [
    "DEFAULT_CHAT_MODEL",
    "DEFAULT_MIN_SIMILARITY",
    "NOT_FOUND",
    "SEARCH_MODES",
    "Answer",
    "Answerer",
    "Citation",
    "ExtractiveAnswerer",
    "Hit",
    "Moment",
    "OpenAIAnswerer",
    "ParquetSearchBackend",
    "PostgresSearchBackend",
    "SearchBackend",
    "SearchError",
    "SearchFilters",
    "SearchResult",
    "Searcher",
    "answerer_for",
    "ask",
    "backend_for",
    "file_store_for",
    "format_relevance",
    "format_timestamp",
    "fuse",
    "group_into_moments",
    "parse_citations",
    "searcher_for",
]


def _s3_store(settings: Settings) -> BlobStore:
    from videoqa_pipeline.aws import AwsConfig
    from videoqa_pipeline.storage.s3_blobs import S3BlobStore

    return S3BlobStore(
        settings.aws_s3_bucket or "",
        settings.s3_prefix,
        AwsConfig(region=settings.aws_region, endpoint_url=settings.aws_endpoint_url),
    )


def file_store_for(settings: Settings) -> BlobStore:
    """The blob store holding media (keyframes, normalized videos): FILE_STORAGE's choice."""
    return _s3_store(settings) if settings.file_storage == "s3" else LocalBlobStore(settings.blob_root)


def backend_for(settings: Settings) -> SearchBackend:
    """PostgreSQL tables, or Parquet on S3 when ``METADATA_STORAGE=s3``."""
    if settings.metadata_storage == "s3":
        return ParquetSearchBackend(_s3_store(settings))
    database = get_database(
        DatabaseSettings(
            url=settings.database_url,
            home=settings.home,
            pool_size=settings.postgres_pool_size,
            timeout_seconds=settings.postgres_timeout,
        )
    )
    return PostgresSearchBackend(database)


def searcher_for(settings: Settings) -> Searcher:
    """A :class:`Searcher` over what the pipeline stored with ``settings``, using the same embedder.

    Args:
        settings: Deployment settings (storage backend, database, AI providers).
    """
    return Searcher(backend_for(settings), get_embedder(settings.ai))


def answerer_for(searcher: Searcher, env: Mapping[str, str]) -> Answerer:
    """The chat answerer when the ask protocol's provider is ``openai``, else the extractive one.

    The settings are :class:`AIConfig`'s (``VIDEOQA_ASK_PROVIDER``, ``VIDEOQA_ASK_BASE_URL``,
    ``VIDEOQA_ASK_MODEL`` or the older ``VIDEOQA_CHAT_MODEL``; unset, OpenAI when
    ``OPENAI_API_KEY`` is set), so ``videoqa check-config`` shows the same choice.

    Raises:
        SearchError: ``VIDEOQA_ASK_PROVIDER`` has another value.
    """
    config = AIConfig.from_env(env)
    if config.ask_provider == "openai":
        return OpenAIAnswerer(config)
    if config.ask_provider == "local":
        return ExtractiveAnswerer(searcher.embedder)
    raise SearchError(f"VIDEOQA_ASK_PROVIDER={config.ask_provider!r} is not known; use 'local' or 'openai'")

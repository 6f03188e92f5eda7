"""Fixtures for search tests: the storage layer's real PostgreSQL servers, the offline embedder, a corpus.

The database fixtures are the storage tests' own (imported, not copied): the embedded server with
pgvector and a throwaway system PostgreSQL without it.
"""

from __future__ import annotations

import uuid

import pytest

from videoqa_pipeline.ai import AIConfig, get_embedder
from videoqa_pipeline.ai.types import Embedder
from videoqa_pipeline.search import PostgresSearchBackend, Searcher
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.tables import replace_partition
from videoqa_pipeline_tests.search.corpus import Corpus, write_corpus
from videoqa_pipeline_tests.storage import conftest as storage_fixtures

# The storage tests' servers, reused: the embedded one with pgvector, the system one without.
embedded_home = storage_fixtures.embedded_home
system_postgres_url = storage_fixtures.system_postgres_url
backend = storage_fixtures.backend
_databases = storage_fixtures._databases
database = storage_fixtures.database
video_id = storage_fixtures.video_id


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The offline all-MiniLM embedder the pipeline uses without OpenAI settings."""
    return get_embedder(AIConfig.from_env({}))


_corpora: dict[str, Corpus] = {}


@pytest.fixture()
def corpus(database: Database, backend: str, embedder: Embedder) -> Corpus:
    """The corpus, written once per backend."""
    if backend not in _corpora:
        prefix = f"s{uuid.uuid4().hex[:6]}-"
        _corpora[backend] = write_corpus(
            lambda spec, video_id, frame: replace_partition(database, spec, video_id, frame), embedder, prefix
        )
    return _corpora[backend]


@pytest.fixture()
def searcher(database: Database, embedder: Embedder) -> Searcher:
    return Searcher(PostgresSearchBackend(database), embedder)

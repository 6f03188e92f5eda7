"""Dagster resources: the same keys in every environment, so assets never know where they run.

Each resource is a thin, configurable handle onto a pure library object (a blob store,
the database, the AI providers); the heavy objects are created once per process.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from videoqa_pipeline.ai import AIConfig, Embedder, FrameAnalyzer, Transcriber
from videoqa_pipeline.ai.registry import get_embedder, get_frame_analyzer, get_transcriber
from videoqa_pipeline.storage.blobs import BlobStore, LocalBlobStore
from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database


class DatabaseResource(dg.ConfigurableResource):
    """The metadata database: DATABASE_URL, or the embedded PostgreSQL under VIDEOQA_HOME when unset."""

    database_url: str | None = None
    home: str = ".videoqa"
    pool_size: int = 5
    timeout_seconds: float = 10.0

    def get(self) -> Database:
        database = get_database(
            DatabaseSettings(
                url=self.database_url,
                home=Path(self.home),
                pool_size=self.pool_size,
                timeout_seconds=self.timeout_seconds,
            )
        )
        database.ensure_schema()
        return database


class BlobStoreResource(dg.ConfigurableResource):
    """Where media blobs (originals, normalized video, audio, keyframes) live."""

    kind: str = "local"
    root: str = ".videoqa/blobs"

    def get(self) -> BlobStore:
        if self.kind != "local":
            raise dg.Failure(f"blob store kind {self.kind!r} is not available in this version (use local)")
        return LocalBlobStore(Path(self.root))


class AIResource(dg.ConfigurableResource):
    """The AI providers chosen by settings (offline models by default, OpenAI when configured).

    Provider settings are read from the process environment at run time, so API keys never
    appear in run config or the UI.
    """

    def config(self) -> AIConfig:
        return AIConfig.from_env(os.environ)

    def transcriber(self) -> Transcriber:
        return get_transcriber(self.config())

    def frame_analyzer(self) -> FrameAnalyzer:
        return get_frame_analyzer(self.config())

    def embedder(self) -> Embedder:
        return get_embedder(self.config())

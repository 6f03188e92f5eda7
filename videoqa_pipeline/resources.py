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
from videoqa_pipeline.aws import AwsConfig
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.blobs import BlobStore, LocalBlobStore
from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database
from videoqa_pipeline.storage.io_managers import PostgresTableIOManager
from videoqa_pipeline.storage.parquet_io_manager import ParquetTableIOManager
from videoqa_pipeline.storage.s3_blobs import S3BlobStore


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
    """Where media blobs (originals, normalized video, audio, keyframes) live.

    ``kind="local"``: files under ``root``. ``kind="s3"``: objects under ``prefix`` in ``bucket``
    (AWS_S3_BUCKET, S3_PREFIX), reached through ``region`` and ``endpoint_url`` (MinIO, LocalStack).
    """

    kind: str = "local"
    root: str = ".videoqa/blobs"
    bucket: str | None = None
    prefix: str = "video-processing/"
    region: str = "us-east-1"
    endpoint_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStoreResource:
        """The blob store FILE_STORAGE names, configured from the other settings."""
        return cls(
            kind=settings.file_storage,
            root=str(settings.blob_root),
            bucket=settings.aws_s3_bucket,
            prefix=settings.s3_prefix,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
        )

    def get(self) -> BlobStore:
        if self.kind == "s3":
            return S3BlobStore(
                self.bucket or "", self.prefix, AwsConfig(region=self.region, endpoint_url=self.endpoint_url)
            )
        if self.kind != "local":
            raise dg.Failure(
                f"blob store kind {self.kind!r} is not available in this version (use local or s3)"
            )
        return LocalBlobStore(Path(self.root))


def table_io_manager(
    settings: Settings, database_url: str | dg.EnvVar | None
) -> PostgresTableIOManager | ParquetTableIOManager:
    """The IO manager METADATA_STORAGE names: PostgreSQL tables, or Parquet objects on S3."""
    if settings.metadata_storage == "s3":
        return ParquetTableIOManager(
            bucket=settings.aws_s3_bucket or "",
            prefix=settings.s3_prefix,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
        )
    return PostgresTableIOManager(
        database_url=database_url,
        home=str(settings.home),
        pool_size=settings.postgres_pool_size,
        timeout_seconds=settings.postgres_timeout,
    )


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

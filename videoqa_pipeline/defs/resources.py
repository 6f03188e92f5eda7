"""Dagster resources: the same keys in every environment, so assets never know where they run.

Each resource is a thin, configurable handle onto a pure library object (a blob store, the
database, the AI providers); the heavy objects are created once per process. Connection strings
and API keys are passed as ``dg.EnvVar`` references, so the UI shows the variable's name, never
its value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg

from videoqa_pipeline.ai import AIConfig, Embedder, FrameAnalyzer, Transcriber
from videoqa_pipeline.ai.registry import get_embedder, get_frame_analyzer, get_transcriber
from videoqa_pipeline.aws import AwsConfig
from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.io_managers.parquet import ParquetTableIOManager
from videoqa_pipeline.defs.io_managers.postgres import PostgresTableIOManager
from videoqa_pipeline.settings import Settings, load_settings
from videoqa_pipeline.storage.blobs import BlobStore, LocalBlobStore
from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database
from videoqa_pipeline.storage.s3_blobs import S3BlobStore


class DatabaseResource(dg.ConfigurableResource):
    """The metadata database: DATABASE_URL, or the embedded PostgreSQL under VIDEOQA_HOME when unset."""

    database_url: str | None = None
    home: str = ".videoqa"
    pool_size: int = 5
    timeout_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings, secret_as_env_var: bool = True) -> DatabaseResource:
        """The database DATABASE_URL names (a reference to it when ``secret_as_env_var``)."""
        return cls(
            database_url=_database_url(settings, secret_as_env_var),
            home=str(settings.home),
            pool_size=settings.postgres_pool_size,
            timeout_seconds=settings.postgres_timeout,
        )

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


class AIResource(dg.ConfigurableResource):
    """The AI providers chosen by settings (offline models by default, OpenAI or a compatible server
    when configured), one field per setting so the UI shows what a run uses.

    ``openai_api_key`` is a secret: built from settings it is an ``EnvVar`` reference, resolved only
    inside the run, so the UI shows the variable's name, never the key.
    """

    transcription_provider: str = "local"
    vision_provider: str = "local"
    embedding_provider: str = "local"
    asr_model: str | None = None
    vision_model: str | None = None
    embed_model: str | None = None
    model_cache: str | None = None
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    asr_base_url: str | None = None
    vision_base_url: str | None = None
    embed_base_url: str | None = None
    ask_base_url: str | None = None
    ask_provider: str = "local"
    ask_model: str | None = None
    asr_api_key: str | None = None
    vision_api_key: str | None = None
    embed_api_key: str | None = None
    ask_api_key: str | None = None
    openai_max_retries: int = 3
    openai_timeout: float = 120.0
    openai_max_concurrency: int = 4
    prices_json: str = "{}"

    @classmethod
    def from_settings(cls, settings: Settings, secret_as_env_var: bool = True) -> AIResource:
        ai = settings.ai
        values = {name: getattr(ai, name) for name in _AI_FIELDS}
        keys = {field: getattr(ai, field) for field in _AI_KEYS}
        if secret_as_env_var:
            keys = {
                field: dg.EnvVar(variable) if keys[field] else None for field, variable in _AI_KEYS.items()
            }
        return cls(**values, **keys, prices_json=json.dumps(ai.prices, sort_keys=True))

    def config(self) -> AIConfig:
        values = {name: getattr(self, name) for name in (*_AI_FIELDS, *_AI_KEYS)}
        return AIConfig(**values, prices=json.loads(self.prices_json))

    def transcriber(self) -> Transcriber:
        return get_transcriber(self.config())

    def frame_analyzer(self) -> FrameAnalyzer:
        return get_frame_analyzer(self.config())

    def embedder(self) -> Embedder:
        return get_embedder(self.config())


#: AIConfig's API keys, by the variable each is read from: secrets, so AIResource built from
#: settings holds ``EnvVar`` references to them, resolved only inside the run.
_AI_KEYS = {
    "openai_api_key": "OPENAI_API_KEY",
    "asr_api_key": "VIDEOQA_ASR_API_KEY",
    "vision_api_key": "VIDEOQA_VISION_API_KEY",
    "embed_api_key": "VIDEOQA_EMBED_API_KEY",
    "ask_api_key": "VIDEOQA_ASK_API_KEY",
}

#: AIConfig's settings that AIResource carries field for field (the keys and prices apart).
_AI_FIELDS = (
    "transcription_provider",
    "vision_provider",
    "embedding_provider",
    "asr_model",
    "vision_model",
    "embed_model",
    "model_cache",
    "openai_base_url",
    "asr_base_url",
    "vision_base_url",
    "embed_base_url",
    "ask_base_url",
    "ask_provider",
    "ask_model",
    "openai_max_retries",
    "openai_timeout",
    "openai_max_concurrency",
)


def _database_url(settings: Settings, as_env_var: bool) -> str | None:
    # The connection string may hold a password: reference the variable so the UI never shows it.
    if settings.database_url and as_env_var:
        return dg.EnvVar("DATABASE_URL")
    return settings.database_url


def database_of(settings: Settings) -> Database:
    """The metadata database ``settings`` name, schema ensured (for callers outside a run)."""
    return DatabaseResource.from_settings(settings, secret_as_env_var=False).get()


def table_io_manager(
    settings: Settings, secrets_as_env_vars: bool = True
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
        database_url=_database_url(settings, secrets_as_env_vars),
        home=str(settings.home),
        pool_size=settings.postgres_pool_size,
        timeout_seconds=settings.postgres_timeout,
    )


def build_resources(settings: Settings, secrets_as_env_vars: bool = True) -> dict[str, Any]:
    """Same keys in every environment; only their configuration changes.

    Args:
        settings: The deployment's settings.
        secrets_as_env_vars: Pass DATABASE_URL and OPENAI_API_KEY as ``EnvVar`` references (a code
            location, whose config the UI shows) rather than values (an in-process run).
    """
    return {
        # METADATA_STORAGE picks the tables' backend, FILE_STORAGE the blobs': same keys either way.
        "io_manager": table_io_manager(settings, secrets_as_env_vars),
        "database": DatabaseResource.from_settings(settings, secrets_as_env_vars),
        "blob_store": BlobStoreResource.from_settings(settings),
        "ai": AIResource.from_settings(settings, secrets_as_env_vars),
        "pipeline_config": PipelineConfig.from_settings(settings),
    }


def resource_definitions(settings: Settings, secrets_as_env_vars: bool = True) -> dg.Definitions:
    return dg.Definitions(resources=build_resources(settings, secrets_as_env_vars))


@dg.definitions
def resources() -> dg.Definitions:
    """The resources for this process's settings."""
    return resource_definitions(load_settings())

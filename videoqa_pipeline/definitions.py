"""Dagster entry point: assets, job and resources built from the environment's settings."""

from __future__ import annotations

import os

import dagster as dg

from videoqa_pipeline.assets import build_video_assets
from videoqa_pipeline.config import PipelineConfig
from videoqa_pipeline.resources import AIResource, BlobStoreResource, DatabaseResource
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.io_managers import PostgresTableIOManager

VIDEO_PIPELINE_JOB = "video_pipeline"


def build_resources(settings: Settings) -> dict[str, object]:
    """Same keys in every environment; only their configuration changes."""
    # The connection string may hold a password: reference the variable so the UI never shows it.
    database_url: str | dg.EnvVar | None = dg.EnvVar("DATABASE_URL") if settings.database_url else None
    database_home = str(settings.home)
    return {
        "io_manager": PostgresTableIOManager(
            database_url=database_url,
            home=database_home,
            pool_size=settings.postgres_pool_size,
            timeout_seconds=settings.postgres_timeout,
        ),
        "database": DatabaseResource(
            database_url=database_url,
            home=database_home,
            pool_size=settings.postgres_pool_size,
            timeout_seconds=settings.postgres_timeout,
        ),
        "blob_store": BlobStoreResource(kind=settings.file_storage, root=str(settings.blob_root)),
        "ai": AIResource(),
        "pipeline_config": PipelineConfig.from_settings(settings),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """The whole code location for ``settings``.

    Runs use the in-process executor: the seven steps of one video are sequential anyway, and
    a subprocess per step costs seconds of Python start-up and model loading each (see the
    README and ``benchmarks/bench_pipeline.py``). Parallelism comes from running many videos
    (runs) at once instead.
    """
    settings.configure_logging()
    assets = build_video_assets(settings.worker_max_attempts)
    video_pipeline = dg.define_asset_job(
        VIDEO_PIPELINE_JOB,
        selection=dg.AssetSelection.assets(*assets),
        description="Every stage for one video: normalize, transcribe, scenes, keyframes, analyse, embed.",
    )
    return dg.Definitions(
        assets=assets,
        jobs=[video_pipeline],
        resources=build_resources(settings),
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env(os.environ).validate())

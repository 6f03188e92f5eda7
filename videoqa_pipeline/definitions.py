"""Dagster entry point: assets, job and resources built from the environment's settings."""

from __future__ import annotations

import os

import dagster as dg

from videoqa_pipeline.assets import build_video_assets
from videoqa_pipeline.checks import build_check_job, build_searchable_check
from videoqa_pipeline.config import PipelineConfig
from videoqa_pipeline.resources import AIResource, BlobStoreResource, DatabaseResource, table_io_manager
from videoqa_pipeline.service.callback_sensor import build_callback_sensor
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.sources.inbox_sensor import build_inbox_sensor
from videoqa_pipeline.sources.job_sensor import build_job_sensor
from videoqa_pipeline.sources.run_ledger import build_job_hooks
from videoqa_pipeline.sources.run_status import build_run_status_sensors
from videoqa_pipeline.sources.sqs_sensor import build_sqs_sensor

VIDEO_PIPELINE_JOB = "video_pipeline"


def build_resources(settings: Settings) -> dict[str, object]:
    """Same keys in every environment; only their configuration changes."""
    # The connection string may hold a password: reference the variable so the UI never shows it.
    database_url: str | dg.EnvVar | None = dg.EnvVar("DATABASE_URL") if settings.database_url else None
    database_home = str(settings.home)
    return {
        # METADATA_STORAGE picks the tables' backend, FILE_STORAGE the blobs': same keys either way.
        "io_manager": table_io_manager(settings, database_url),
        "database": DatabaseResource(
            database_url=database_url,
            home=database_home,
            pool_size=settings.postgres_pool_size,
            timeout_seconds=settings.postgres_timeout,
        ),
        "blob_store": BlobStoreResource.from_settings(settings),
        "ai": AIResource(),
        "pipeline_config": PipelineConfig.from_settings(settings),
    }


def build_sensors(
    settings: Settings, job: dg.UnresolvedAssetJobDefinition, assets: list[dg.AssetsDefinition]
) -> list[dg.SensorDefinition]:
    """Job sources per JOB_SOURCE_TYPE (``postgres``, ``sqs``, ``webhook`` → the ledger's job sensor;
    the inbox when listed or when the database is the embedded one), the run status write-back and
    the completion callbacks always."""
    sensors: list[dg.SensorDefinition] = []
    if (
        any(source in settings.job_sources for source in ("postgres", "sqs", "webhook"))
        or settings.watches_inbox
    ):
        # Every source lands in the ledger; the job sensor is what turns it into runs.
        sensors.append(build_job_sensor(settings, job.name, assets))
    if settings.watches_inbox:
        sensors.append(build_inbox_sensor(settings))
    if "sqs" in settings.job_sources:
        sensors.append(build_sqs_sensor(settings))
    sensors.extend(build_run_status_sensors(settings, [job]))
    # Completion callbacks for every source; a dead receiver costs this sensor a bounded tick, never a run.
    sensors.append(build_callback_sensor(settings))
    return sensors


def build_definitions(settings: Settings) -> dg.Definitions:
    """The whole code location for ``settings``.

    Runs use the in-process executor: the seven steps of one video are sequential anyway, and
    a subprocess per step costs seconds of Python start-up and model loading each (see the
    README and ``benchmarks/bench_pipeline.py``). Parallelism comes from running many videos
    (runs) at once instead.
    """
    settings.configure_logging()
    assets = build_video_assets(settings.worker_max_attempts)
    searchable_check = build_searchable_check(settings)
    video_pipeline = dg.define_asset_job(
        VIDEO_PIPELINE_JOB,
        # Checks run apart (the run hooks treat `embeddings` as the last step): see checks.py.
        selection=dg.AssetSelection.assets(*assets).without_checks(),
        description="Every stage for one video: normalize, transcribe, scenes, keyframes, analyse, embed.",
        hooks=build_job_hooks(settings.worker_max_attempts),
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=[searchable_check],
        jobs=[video_pipeline, build_check_job(searchable_check)],
        sensors=build_sensors(settings, video_pipeline, assets),
        resources=build_resources(settings),
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env(os.environ).validate())

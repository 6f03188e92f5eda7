"""The ``ingest`` group: the original video and its normalized form.

Each asset resolves its inputs, calls its stage from :mod:`videoqa_pipeline.steps` and attaches
the stage's facts as metadata (:mod:`.common`).
"""

# No `from __future__ import annotations`: Dagster reads the parameters' annotations to tell
# resources from upstream assets.
import dagster as dg
import pandas as pd

from videoqa_pipeline import steps
from videoqa_pipeline.defs.assets.common import (
    TRANSCODE_POOL,
    check_settings,
    materialized,
    processing_options,
    reported_as_failure,
    resolve_source_uri,
    video_asset,
)
from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.hooks import record_run_start
from videoqa_pipeline.defs.resources import BlobStoreResource, DatabaseResource


@video_asset(
    group_name="ingest",
    kinds={"ffmpeg", "postgres"},
    description="The original video, copied to the blob store, with the facts ffprobe reads from it.",
)
def source_video(
    context: dg.AssetExecutionContext,
    pipeline_config: PipelineConfig,
    database: DatabaseResource,
    blob_store: BlobStoreResource,
) -> dg.Output[pd.DataFrame]:
    video_id = context.partition_key
    check_settings()
    # The run marks its own job running (sensors may lag); a cancelled job stops here.
    record_run_start(context.run, database.get())
    context.log.info("processing options: %s", pipeline_config.model_dump())
    source_uri = resolve_source_uri(context, database)
    with reported_as_failure("source_video", video_id):
        result = steps.ingest_source(source_uri, video_id, blob_store.get())
    return materialized(result)


@video_asset(
    group_name="ingest",
    kinds={"ffmpeg"},
    pool=TRANSCODE_POOL,
    description="H.264 MP4 (height capped, never upscaled) and a 16 kHz mono WAV when the video has sound.",
)
def normalized_video(
    context: dg.AssetExecutionContext,
    source_video: pd.DataFrame,
    pipeline_config: PipelineConfig,
    blob_store: BlobStoreResource,
) -> dg.Output[pd.DataFrame]:
    video_id = context.partition_key
    with reported_as_failure("normalized_video", video_id):
        result = steps.normalize_video(
            source_video, video_id, blob_store.get(), processing_options(pipeline_config)
        )
    return materialized(result)

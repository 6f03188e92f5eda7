"""The ``analysis`` group: what is said and shown in the video.

Each asset resolves its inputs, calls its stage from :mod:`videoqa_pipeline.steps` and attaches
the stage's facts as metadata (:mod:`.common`).
"""

# No `from __future__ import annotations`: Dagster reads the parameters' annotations to tell
# resources from upstream assets.
import dagster as dg
import pandas as pd

from videoqa_pipeline import steps
from videoqa_pipeline.defs.assets.common import (
    AI_POOL,
    materialized,
    processing_options,
    reported_as_failure,
    upstream_warning,
    video_asset,
)
from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.resources import AIResource, BlobStoreResource


@video_asset(
    group_name="analysis",
    kinds={"whisper"},
    pool=AI_POOL,
    description="Speech as timed segments (with word times when the model gives them); empty when silent or disabled.",
)
def transcript(
    context: dg.AssetExecutionContext,
    normalized_video: pd.DataFrame,
    pipeline_config: PipelineConfig,
    blob_store: BlobStoreResource,
    ai: AIResource,
) -> dg.Output[pd.DataFrame]:
    video_id = context.partition_key
    with reported_as_failure("transcript", video_id):
        result = steps.transcribe_audio(
            normalized_video,
            video_id,
            blob_store.get(),
            ai.transcriber,
            processing_options(pipeline_config),
            audio_problem=upstream_warning(context, "normalized_video"),
        )
    return materialized(result)


@video_asset(
    group_name="analysis",
    kinds={"opencv"},
    description="Shots found by PySceneDetect; a video without cuts is one scene.",
)
def scenes(
    context: dg.AssetExecutionContext,
    normalized_video: pd.DataFrame,
    pipeline_config: PipelineConfig,
    blob_store: BlobStoreResource,
) -> dg.Output[pd.DataFrame]:
    video_id = context.partition_key
    with reported_as_failure("scenes", video_id):
        result = steps.detect_video_scenes(
            normalized_video, video_id, blob_store.get(), processing_options(pipeline_config)
        )
    return materialized(result)


@video_asset(
    group_name="analysis",
    kinds={"ffmpeg"},
    description="One JPEG per selected scene: first and last scenes always, the rest spread evenly up to max_frames_per_video.",
)
def keyframes(
    context: dg.AssetExecutionContext,
    scenes: pd.DataFrame,
    normalized_video: pd.DataFrame,
    pipeline_config: PipelineConfig,
    blob_store: BlobStoreResource,
) -> dg.Output[pd.DataFrame]:
    video_id = context.partition_key
    with reported_as_failure("keyframes", video_id):
        result = steps.extract_video_keyframes(
            scenes, normalized_video, video_id, blob_store.get(), processing_options(pipeline_config)
        )
    for position, row in enumerate(result.rows):
        context.log.debug(
            "keyframe %d: scene %d at %.2fs", position, row["scene_index"], row["timestamp_seconds"]
        )
    return materialized(result)


@video_asset(
    group_name="analysis",
    kinds={"onnx"},
    pool=AI_POOL,
    description="What each keyframe shows: caption or description, labels and on-screen text (OCR).",
)
def frame_analyses(
    context: dg.AssetExecutionContext,
    keyframes: pd.DataFrame,
    pipeline_config: PipelineConfig,
    blob_store: BlobStoreResource,
    ai: AIResource,
) -> dg.Output[pd.DataFrame]:
    video_id = context.partition_key
    with reported_as_failure("frame_analyses", video_id):
        result = steps.analyze_keyframes(
            keyframes, video_id, blob_store.get(), ai.frame_analyzer, processing_options(pipeline_config)
        )
    return materialized(result)

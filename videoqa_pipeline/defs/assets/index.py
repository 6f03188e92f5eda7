"""The ``index`` group: the vectors search and ask read.

The asset resolves its inputs, calls its stage from :mod:`videoqa_pipeline.steps` and attaches
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
    video_asset,
)
from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.resources import AIResource


@video_asset(
    group_name="index",
    kinds={"pgvector"},
    pool=AI_POOL,
    description="Vectors for transcript chunks (aligned to scenes) and keyframe texts: what search and ask read.",
)
def embeddings(
    context: dg.AssetExecutionContext,
    transcript: pd.DataFrame,
    scenes: pd.DataFrame,
    frame_analyses: pd.DataFrame,
    pipeline_config: PipelineConfig,
    ai: AIResource,
) -> dg.Output[pd.DataFrame]:
    video_id = context.partition_key
    with reported_as_failure("embeddings", video_id):
        result = steps.embed_video(
            transcript, scenes, frame_analyses, ai.embedder, processing_options(pipeline_config)
        )
    return materialized(result)

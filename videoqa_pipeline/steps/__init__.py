"""The pipeline's stages as plain functions: inputs in, rows, blobs and facts out. No Dagster.

Each stage takes plain values, the upstream tables (pandas frames, as the IO managers load them),
library objects (a :class:`~videoqa_pipeline.storage.blobs.BlobStore`, factories of the AI
providers) and :class:`ProcessingOptions`, writes its blobs and returns a :class:`StageResult`.
The Dagster assets (``videoqa_pipeline/defs/assets/``) call these and only add orchestration:
partitions, retries, IO managers, metadata. The benchmark calls the same functions directly, so
what it measures as orchestration overhead is measured against the real pipeline.

Stages raise library errors with a ``permanent`` flag (:data:`STAGE_ERRORS`); the Dagster layer
maps them onto failures in one place.
"""

from videoqa_pipeline.steps.embed import embed_video
from videoqa_pipeline.steps.errors import STAGE_ERRORS, StageInputError
from videoqa_pipeline.steps.frame_analysis import FRAME_BATCH_SIZE, analyze_keyframes
from videoqa_pipeline.steps.keyframes import extract_video_keyframes
from videoqa_pipeline.steps.normalize import normalize_video
from videoqa_pipeline.steps.options import ProcessingOptions
from videoqa_pipeline.steps.result import Fact, Location, Markdown, StageResult
from videoqa_pipeline.steps.scenes import detect_video_scenes
from videoqa_pipeline.steps.source import ingest_source
from videoqa_pipeline.steps.transcribe import transcribe_audio

__all__ = [
    "FRAME_BATCH_SIZE",
    "STAGE_ERRORS",
    "Fact",
    "Location",
    "Markdown",
    "ProcessingOptions",
    "StageInputError",
    "StageResult",
    "analyze_keyframes",
    "detect_video_scenes",
    "embed_video",
    "extract_video_keyframes",
    "ingest_source",
    "normalize_video",
    "transcribe_audio",
]

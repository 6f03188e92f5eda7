"""Typed run configuration shared by every step of a video's run.

The fields mirror :class:`videoqa_pipeline.steps.ProcessingOptions` (the Dagster-free schema the
ledger checks job options against); a test keeps names, types, defaults and bounds identical.

It is a single resource rather than per-asset op config so that one value (say
``max_frames_per_video``) is set once per run, in the launchpad, a backfill or a job's
options, and every step sees the same value. Bounds are checked when the resource is
built, which happens before the first step does any work.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field, ValidationInfo, field_validator

from videoqa_pipeline.options import DEFAULT_PRESET, checked_choice
from videoqa_pipeline.settings import Settings


class PipelineConfig(dg.ConfigurableResource):
    """Processing options for one run; defaults come from the environment (MAX_FRAMES_PER_VIDEO, ENABLE_*)."""

    max_frames_per_video: int = Field(
        default=50,
        ge=1,
        le=10_000,
        description="Upper bound on keyframes per video (smart selection keeps first and last).",
    )
    enable_transcription: bool = Field(
        default=True, description="Transcribe speech; off gives an empty transcript."
    )
    enable_vision_analysis: bool = Field(
        default=True, description="Analyse keyframes (OCR, caption, labels)."
    )
    enable_embeddings: bool = Field(
        default=True, description="Embed transcript chunks and frame texts for search."
    )
    scene_detector: str = Field(
        default="adaptive", description="PySceneDetect detector: adaptive or content."
    )
    scene_threshold: float | None = Field(
        default=None, gt=0, description="Detector threshold; unset uses the detector's own default."
    )
    min_scene_seconds: float = Field(default=0.5, ge=0.0, le=600.0, description="Shortest scene kept.")
    normalize_height: int = Field(
        default=720, ge=144, le=4320, description="Normalized video height (never upscaled)."
    )
    normalize_preset: str = Field(
        default=DEFAULT_PRESET,
        description="x264 preset when a video is re-encoded: ultrafast is about 1.6x quicker than "
        "veryfast for bigger files (benchmarks/bench_media.py measures each).",
    )
    keyframe_max_width: int = Field(default=640, ge=64, le=3840, description="Keyframe JPEG width cap.")
    language: str | None = Field(
        default=None, description="Spoken language code (e.g. en); unset detects it."
    )

    @field_validator("scene_detector", "normalize_preset")
    @classmethod
    def _known_choice(cls, value: str, info: ValidationInfo) -> str:
        return checked_choice(str(info.field_name), value)

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            max_frames_per_video=settings.max_frames_per_video,
            enable_transcription=settings.enable_transcription,
            enable_vision_analysis=settings.enable_vision_analysis,
            enable_embeddings=settings.enable_embeddings,
        )

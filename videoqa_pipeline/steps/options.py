"""The processing options every stage reads, as a plain value.

The Dagster layer keeps them in the ``pipeline_config`` resource (one value per run, set in the
launchpad, a backfill or a job's options); the stages only need the values, so they take this
frozen copy and never import Dagster. :meth:`ProcessingOptions.of` reads the same fields from any
object that has them (the resource itself, a test double, ``argparse`` results).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from videoqa_pipeline.media.normalize import DEFAULT_PRESET


@dataclass(frozen=True)
class ProcessingOptions:
    """Options of one run; defaults match ``PipelineConfig``'s (a test keeps them in step).

    Attributes:
        max_frames_per_video: Upper bound on keyframes per video.
        enable_transcription: Transcribe speech; off gives an empty transcript.
        enable_vision_analysis: Analyse keyframes (OCR, caption, labels).
        enable_embeddings: Embed transcript chunks and frame texts for search.
        scene_detector: PySceneDetect detector: ``adaptive`` or ``content``.
        scene_threshold: Detector threshold; None uses the detector's own default.
        min_scene_seconds: Shortest scene kept.
        normalize_height: Normalized video height (never upscaled).
        normalize_preset: x264 preset when a video is re-encoded.
        keyframe_max_width: Keyframe JPEG width cap.
        language: Spoken language code; None detects it.
    """

    max_frames_per_video: int = 50
    enable_transcription: bool = True
    enable_vision_analysis: bool = True
    enable_embeddings: bool = True
    scene_detector: str = "adaptive"
    scene_threshold: float | None = None
    min_scene_seconds: float = 0.5
    normalize_height: int = 720
    normalize_preset: str = DEFAULT_PRESET
    keyframe_max_width: int = 640
    language: str | None = None

    @classmethod
    def of(cls, source: Any) -> ProcessingOptions:
        """The options held by ``source``'s attributes of the same names (missing ones keep defaults)."""
        missing = object()
        values: dict[str, Any] = {
            option.name: value
            for option in dataclasses.fields(cls)
            if (value := getattr(source, option.name, missing)) is not missing
        }
        return cls(**values)

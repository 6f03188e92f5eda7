"""The processing options every stage reads: names, types, defaults and bounds.

Pure (pydantic only), so the ledger can check a job's options at intake without loading media
libraries or Dagster.

This is the schema per-job options are checked against when a job is submitted (the ledger) and
the value the stages take. The Dagster layer declares the same fields on its ``pipeline_config``
resource, so the launchpad shows and validates them; a test keeps the two identical.
:meth:`ProcessingOptions.of` reads the fields from any object that has them (the resource itself,
a test double, ``argparse`` results).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

SCENE_DETECTORS = ("adaptive", "content")
# "veryfast" keeps normalize near the cost of a plain decode on small machines while staying
# visually clean at CRF 23; the media benchmark compares presets.
DEFAULT_PRESET = "veryfast"
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)

#: The allowed values of the text options that are choices.
CHOICES: dict[str, tuple[str, ...]] = {
    "scene_detector": SCENE_DETECTORS,
    "normalize_preset": X264_PRESETS,
}


def checked_choice(name: str, value: str) -> str:
    """``value`` when it is one of option ``name``'s choices, else ValueError naming them."""
    choices = CHOICES[name]
    if value not in choices:
        raise ValueError(f"{name}={value!r} is unknown: expected one of {', '.join(choices)}")
    return value


class ProcessingOptions(BaseModel):
    """Options of one run (frozen: the stages only read them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_frames_per_video: int = Field(default=50, ge=1, le=10_000)
    enable_transcription: bool = True
    enable_vision_analysis: bool = True
    enable_embeddings: bool = True
    scene_detector: str = "adaptive"
    scene_threshold: float | None = Field(default=None, gt=0)
    min_scene_seconds: float = Field(default=0.5, ge=0.0, le=600.0)
    normalize_height: int = Field(default=720, ge=144, le=4320)
    normalize_preset: str = DEFAULT_PRESET
    keyframe_max_width: int = Field(default=640, ge=64, le=3840)
    language: str | None = None

    @field_validator("scene_detector", "normalize_preset")
    @classmethod
    def _known_choice(cls, value: str, info: ValidationInfo) -> str:
        return checked_choice(str(info.field_name), value)

    @classmethod
    def of(cls, source: Any) -> ProcessingOptions:
        """The options held by ``source``'s attributes of the same names (missing ones keep defaults)."""
        missing = object()
        values: dict[str, Any] = {
            name: value
            for name in cls.model_fields
            if (value := getattr(source, name, missing)) is not missing
        }
        return cls(**values)

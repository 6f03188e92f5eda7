"""Stage 4, ``scenes``: the shots of the normalized video (a video without cuts is one scene).

A partly decodable video is analysed as far as it decodes: the facts say how much did
(``decoded_seconds``, ``decodable_fraction``) and, when not all of it, carry a warning the run
copies to its job row.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from videoqa_pipeline import media
from videoqa_pipeline.steps.errors import single_row
from videoqa_pipeline.steps.memory import measured
from videoqa_pipeline.steps.options import ProcessingOptions
from videoqa_pipeline.steps.previews import scenes_preview
from videoqa_pipeline.steps.result import WARNING_FACT, Fact, Markdown, StageResult
from videoqa_pipeline.storage.blobs import BlobStore


def scene_rows(scenes: Sequence[media.Scene]) -> list[dict[str, Any]]:
    """One ``videoqa_scenes`` row per scene."""
    return [
        {
            "scene_index": scene.index,
            "start_seconds": scene.start_seconds,
            "end_seconds": scene.end_seconds,
            "start_frame": scene.start_frame,
            "end_frame": scene.end_frame,
        }
        for scene in scenes
    ]


def scenes_of(scenes: pd.DataFrame) -> list[media.Scene]:
    """The scenes of a ``scenes`` table, in scene order (what :func:`scene_rows` wrote)."""
    return [
        media.Scene(
            index=int(row.scene_index),
            start_seconds=float(row.start_seconds),
            end_seconds=float(row.end_seconds),
            start_frame=int(row.start_frame),
            end_frame=int(row.end_frame),
        )
        for row in scenes.sort_values("scene_index").itertuples()
    ]


def video_coverage_facts(coverage: media.Coverage) -> dict[str, Fact]:
    """How much of the video decoded; a warning naming the undecodable stretches when not all."""
    facts: dict[str, Fact] = {name: float(value) for name, value in coverage.facts().items()}
    if not coverage.complete:
        facts[WARNING_FACT] = (
            f"video undecodable {coverage.undecodable_spans()}: scenes cover "
            f"{coverage.decoded_seconds:.1f} of {coverage.duration:.1f} s"
        )
    return facts


@measured
def detect_video_scenes(
    normalized_video: pd.DataFrame, video_id: str, store: BlobStore, options: ProcessingOptions
) -> StageResult:
    """Find the shots of the normalized video with PySceneDetect.

    Args:
        normalized_video: The video's ``normalized_video`` table (one row).

    Raises:
        StageInputError: ``normalized_video`` has no row for the video.
        MediaError: the video cannot be decoded.
    """
    normalized = single_row(normalized_video, "normalized_video", video_id)
    started = time.perf_counter()
    with store.local_path(str(normalized["video_blob_key"])) as path:
        detection = media.find_scenes(
            path,
            detector=options.scene_detector,
            threshold=options.scene_threshold,
            min_scene_len_seconds=options.min_scene_seconds,
        )
    seconds = time.perf_counter() - started
    found = detection.scenes
    lengths = [scene.end_seconds - scene.start_seconds for scene in found]
    facts: dict[str, Fact] = {
        "scenes": len(found),
        "detector": options.scene_detector,
        "mean_scene_seconds": float(round(statistics.fmean(lengths), 2) if lengths else 0.0),
        "detect_seconds": float(round(seconds, 2)),
        **video_coverage_facts(detection.coverage),
        "preview": Markdown(scenes_preview(found)),
    }
    return StageResult("scenes", scene_rows(found), facts)

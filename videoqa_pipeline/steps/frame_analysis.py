"""Stage 6, ``frame_analyses``: what each keyframe shows (caption, labels, on-screen text)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd

from videoqa_pipeline.ai import FrameAnalysis, FrameAnalyzer, Usage
from videoqa_pipeline.steps.indexing import frame_text
from videoqa_pipeline.steps.memory import measured, release_model
from videoqa_pipeline.steps.options import ProcessingOptions
from videoqa_pipeline.steps.previews import preview_timestamp, usage_facts
from videoqa_pipeline.steps.result import WARNING_FACT, Fact, Markdown, StageResult
from videoqa_pipeline.storage.blobs import BlobStore

#: Keyframes read and analysed at once: bounds the JPEGs held in memory, however many keyframes.
FRAME_BATCH_SIZE = 16
PREVIEW_FRAMES = 10


def batches(keys: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """``keys`` in consecutive slices of at most ``size``."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    for first in range(0, len(keys), size):
        yield keys[first : first + size]


def analyze_in_batches(
    keys: Sequence[str], store: BlobStore, analyzer: FrameAnalyzer, batch_size: int
) -> tuple[list[FrameAnalysis], Usage]:
    """Analyses of the JPEGs under ``keys``, in order, reading ``batch_size`` blobs at a time."""
    analyses: list[FrameAnalysis] = []
    usage = Usage()
    for batch_keys in batches(keys, batch_size):
        batch = analyzer.analyze([store.get_bytes(key) for key in batch_keys])
        analyses.extend(batch.analyses)
        usage = usage + batch.usage
    return analyses, usage


def _preview(timestamps: Sequence[float], analyses: Sequence[FrameAnalysis]) -> str:
    lines = [
        f"- **{preview_timestamp(timestamp)}** "
        f"{frame_text(analysis.caption, analysis.labels, analysis.ocr_text)[:160]}"
        for timestamp, analysis in list(zip(timestamps, analyses, strict=True))[:PREVIEW_FRAMES]
    ]
    return "\n".join(lines) or "(nothing found)"


@measured
def analyze_keyframes(
    keyframes: pd.DataFrame,
    video_id: str,
    store: BlobStore,
    analyzer: Callable[[], FrameAnalyzer],
    options: ProcessingOptions,
    *,
    batch_size: int = FRAME_BATCH_SIZE,
) -> StageResult:
    """Analyse every keyframe, ``batch_size`` JPEGs at a time; empty when disabled or no keyframes.

    Args:
        keyframes: The video's ``keyframes`` table.
        analyzer: Gives the frame analyzer; called only when there are keyframes to analyse.

    Raises:
        AIProviderError: the model could not load or the API call failed.
    """
    if not options.enable_vision_analysis or keyframes.empty:
        reason = "vision analysis disabled" if not options.enable_vision_analysis else "no keyframes"
        return StageResult("frame_analyses", [], {"skipped": reason, "frames": 0})
    ordered = keyframes.sort_values("scene_index")
    provider = analyzer()
    started = time.perf_counter()
    try:
        analyses, usage = analyze_in_batches(
            [str(key) for key in ordered["blob_key"]], store, provider, batch_size
        )
    finally:
        release_model(provider)  # no later stage of the run needs it
    seconds = time.perf_counter() - started
    scene_indices = [int(index) for index in ordered["scene_index"]]
    timestamps = [float(timestamp) for timestamp in ordered["timestamp_seconds"]]
    rows: list[dict[str, Any]] = [
        {
            "scene_index": scene_index,
            "timestamp_seconds": timestamp,
            "caption": analysis.caption,
            "labels": list(analysis.labels),
            "ocr_text": analysis.ocr_text,
            "model": analysis.model,
        }
        for scene_index, timestamp, analysis in zip(scene_indices, timestamps, analyses, strict=True)
    ]
    facts: dict[str, Fact] = {
        "model": provider.model_name,
        "frames": len(rows),
        "frames_with_text": sum(1 for analysis in analyses if analysis.ocr_text.strip()),
        "ms_per_frame": float(round(1000 * seconds / max(1, len(rows)), 1)),
        "preview": Markdown(_preview(timestamps, analyses)),
        **usage_facts(usage),
    }
    # A reply the vision model garbled is a warning of its frame, not a failed stage: say so.
    warned = [
        f"{preview_timestamp(t)} {a.facts[WARNING_FACT]}"
        for t, a in zip(timestamps, analyses, strict=True)
        if a.facts.get(WARNING_FACT)
    ]
    if warned:
        facts[WARNING_FACT] = f"{len(warned)} of {len(rows)} frames read loosely: " + "; ".join(warned[:5])
    return StageResult("frame_analyses", rows, facts)

"""Turn transcripts and frame analyses into the texts that get embedded. Pure: no Dagster.

Transcript text is chunked along scene boundaries so that a search hit points at one
visual moment, and long scenes are split further so each chunk stays short enough for
a small embedding model (all-MiniLM truncates at 256 word pieces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_WORDS_PER_CHUNK = 80


@dataclass(frozen=True)
class TimedText:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class IndexItem:
    kind: str  # "transcript" or "frame"
    start: float
    end: float
    text: str


def _scene_of(time: float, scene_bounds: Sequence[tuple[float, float]]) -> int:
    for index, (start, end) in enumerate(scene_bounds):
        if start <= time < end:
            return index
    return len(scene_bounds) - 1 if scene_bounds and time >= scene_bounds[-1][1] else 0


def transcript_chunks(
    segments: Sequence[TimedText],
    scene_bounds: Sequence[tuple[float, float]],
    max_words: int = MAX_WORDS_PER_CHUNK,
) -> list[IndexItem]:
    """Group transcript segments by the scene holding their midpoint, then cap chunk length.

    Args:
        segments: transcript segments in time order.
        scene_bounds: (start, end) seconds per scene in order; empty means one scene.
        max_words: a chunk is closed once it holds this many words.
    Returns:
        Chunks in time order, each spanning its segments' start to end.
    """
    chunks: list[IndexItem] = []
    current: list[TimedText] = []
    current_scene: int | None = None
    current_words = 0

    def close() -> None:
        nonlocal current, current_words
        if current:
            text = " ".join(part.text.strip() for part in current if part.text.strip())
            if text:
                chunks.append(IndexItem("transcript", current[0].start, current[-1].end, text))
        current, current_words = [], 0

    for segment in segments:
        words = len(segment.text.split())
        if words == 0:
            continue
        scene = _scene_of((segment.start + segment.end) / 2, scene_bounds)
        if current and (scene != current_scene or current_words + words > max_words):
            close()
        current.append(segment)
        current_scene = scene
        current_words += words
    close()
    return chunks


def frame_text(caption: str | None, labels: Sequence[str], ocr_text: str) -> str:
    """One searchable sentence per keyframe from what the vision step saw."""
    parts = []
    if caption:
        parts.append(caption.strip().rstrip(".") + ".")
    if labels:
        parts.append("Labels: " + ", ".join(labels) + ".")
    if ocr_text.strip():
        parts.append("Text on screen: " + " ".join(ocr_text.split()))
    return " ".join(parts)

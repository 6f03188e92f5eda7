"""Metadata a person reads in the Dagster UI: previews, thumbnails, usage and cost.

Kept apart from the assets so they stay a list of steps, and so the formatting can be
tested without running anything.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import cv2
import dagster as dg
import numpy as np

from videoqa_pipeline.ai import TranscriptSegment, Usage
from videoqa_pipeline.media import Keyframe, Scene, select_scene_indices

THUMBNAIL_WIDTH = 160
MAX_THUMBNAILS = 8
PREVIEW_SEGMENTS = 12


def format_timestamp(seconds: float) -> str:
    """``75.4`` -> ``01:15.4``: the form people use to jump in a player."""
    minutes, rest = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes):02d}:{rest:04.1f}"


def thumbnail_data_uri(jpeg: bytes, width: int = THUMBNAIL_WIDTH) -> str:
    """A small inline JPEG, so thumbnails render in the UI without serving files."""
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return ""
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if not ok:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def keyframe_gallery(frames: Sequence[Keyframe], scene_indices: Sequence[int]) -> str:
    """Markdown with up to MAX_THUMBNAILS inline thumbnails, spread over the video."""
    if not frames:
        return "(no keyframes)"
    cells = []
    for position in select_scene_indices(len(frames), MAX_THUMBNAILS):  # first, last, evenly between
        frame, scene = frames[position], scene_indices[position]
        uri = thumbnail_data_uri(frame.jpeg)
        if uri:
            cells.append(f"![scene {scene} at {format_timestamp(frame.timestamp)}]({uri})")
    shown = f"{len(cells)} of {len(frames)} keyframes"
    return f"{shown}\n\n" + " ".join(cells)


def transcript_preview(segments: Sequence[TranscriptSegment]) -> str:
    if not segments:
        return "(no speech)"
    lines = [f"- **{format_timestamp(s.start)}** {s.text.strip()}" for s in segments[:PREVIEW_SEGMENTS]]
    if len(segments) > PREVIEW_SEGMENTS:
        lines.append(f"- … {len(segments) - PREVIEW_SEGMENTS} more segments")
    return "\n".join(lines)


def scenes_preview(scenes: Sequence[Scene]) -> str:
    header = "| scene | start | end | length (s) |\n|---|---|---|---|"
    rows = [
        f"| {s.index} | {format_timestamp(s.start_seconds)} | {format_timestamp(s.end_seconds)} | {s.end_seconds - s.start_seconds:.1f} |"
        for s in scenes[:20]
    ]
    more = [f"\n… {len(scenes) - 20} more"] if len(scenes) > 20 else []
    return "\n".join([header, *rows, *more])


def usage_metadata(usage: Usage) -> dict[str, dg.MetadataValue]:
    """Requests, tokens, audio seconds and estimated cost; paid APIs show their bill here."""
    return {
        "api_requests": dg.MetadataValue.int(usage.requests),
        "audio_seconds": dg.MetadataValue.float(round(usage.audio_seconds, 2)),
        "images": dg.MetadataValue.int(usage.images),
        "input_tokens": dg.MetadataValue.int(usage.input_tokens),
        "output_tokens": dg.MetadataValue.int(usage.output_tokens),
        "estimated_cost_usd": dg.MetadataValue.float(round(usage.cost_usd, 6)),
    }

"""What a person reads about a stage's output: previews, thumbnails, usage and cost. Pure: no Dagster.

Kept apart from the stages so they stay a list of steps, and so the formatting can be tested
without running anything.

Thumbnails come two ways. Dagster's UI renders a Markdown metadata entry in place only while its
text is shorter than :data:`INLINE_MARKDOWN_LIMIT` characters (longer ones hide behind
"[Show Markdown]"), and it has no image metadata type. So :func:`keyframe_gallery` is the full
gallery (several JPEG thumbnails, opened with a click) and :func:`inline_thumbnail` is one small
WebP image per entry, squeezed under the limit so it shows without a click.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import cv2
import numpy as np

from videoqa_pipeline.ai import TranscriptSegment, Usage
from videoqa_pipeline.media import Keyframe, Scene, select_scene_indices

THUMBNAIL_WIDTH = 160
MAX_THUMBNAILS = 8
#: Keyframes shown in place (first, last and evenly between), one metadata entry each.
MAX_INLINE_THUMBNAILS = 4
#: Dagster's UI shows a Markdown entry in place only when it is shorter than this.
INLINE_MARKDOWN_LIMIT = 1000
#: (width, WebP quality) tried in order until an inline thumbnail fits under the limit.
_INLINE_LADDER = ((128, 60), (128, 40), (112, 40), (96, 40), (96, 25), (80, 25), (64, 25))
PREVIEW_SEGMENTS = 12


def preview_timestamp(seconds: float) -> str:
    """``75.4`` -> ``01:15.4``: minutes and tenths, precise enough to tell keyframes apart.

    (Search citations use whole seconds instead: ``videoqa_pipeline.search.format_timestamp``.)
    """
    minutes, rest = divmod(max(0.0, seconds), 60.0)
    return f"{int(minutes):02d}:{rest:04.1f}"


def _decoded(jpeg: bytes) -> np.ndarray | None:
    image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    return image if image is not None and image.size else None


def _resized(image: np.ndarray, width: int) -> np.ndarray:
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _data_uri(image: np.ndarray, extension: str, mime: str, params: list[int]) -> str:
    ok, encoded = cv2.imencode(extension, image, params)
    if not ok:
        return ""
    return f"data:{mime};base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def thumbnail_data_uri(jpeg: bytes, width: int = THUMBNAIL_WIDTH) -> str:
    """A small inline JPEG, so thumbnails render in the UI without serving files."""
    image = _decoded(jpeg)
    if image is None:
        return ""
    return _data_uri(_resized(image, width), ".jpg", "image/jpeg", [cv2.IMWRITE_JPEG_QUALITY, 70])


def inline_thumbnail(jpeg: bytes, caption: str, limit: int = INLINE_MARKDOWN_LIMIT) -> str:
    """Markdown of one WebP thumbnail and its caption, shorter than ``limit`` characters.

    The largest width and quality of a short ladder that fits wins; "" when even the smallest
    does not fit or the JPEG cannot be decoded.
    """
    image = _decoded(jpeg)
    if image is None:
        return ""
    for width, quality in _INLINE_LADDER:
        uri = _data_uri(_resized(image, width), ".webp", "image/webp", [cv2.IMWRITE_WEBP_QUALITY, quality])
        text = f"![{caption}]({uri}) {caption}"
        if uri and len(text) < limit:
            return text
    return ""


def _caption(frame: Keyframe, scene: int) -> str:
    return f"scene {scene} at {preview_timestamp(frame.timestamp)}"


def keyframe_gallery(frames: Sequence[Keyframe], scene_indices: Sequence[int]) -> str:
    """Markdown with up to MAX_THUMBNAILS inline thumbnails, spread over the video."""
    if not frames:
        return "(no keyframes)"
    cells = []
    for position in select_scene_indices(len(frames), MAX_THUMBNAILS):  # first, last, evenly between
        frame, scene = frames[position], scene_indices[position]
        uri = thumbnail_data_uri(frame.jpeg)
        if uri:
            cells.append(f"![{_caption(frame, scene)}]({uri})")
    shown = f"{len(cells)} of {len(frames)} keyframes"
    return f"{shown}\n\n" + " ".join(cells)


def inline_thumbnails(frames: Sequence[Keyframe], scene_indices: Sequence[int]) -> list[str]:
    """Up to MAX_INLINE_THUMBNAILS Markdown thumbnails (first, last, evenly between), each short
    enough for the UI to show in place."""
    if not frames:
        return []
    shown = (
        inline_thumbnail(frames[position].jpeg, _caption(frames[position], scene_indices[position]))
        for position in select_scene_indices(len(frames), MAX_INLINE_THUMBNAILS)
    )
    return [text for text in shown if text]


def transcript_preview(segments: Sequence[TranscriptSegment]) -> str:
    if not segments:
        return "(no speech)"
    lines = [f"- **{preview_timestamp(s.start)}** {s.text.strip()}" for s in segments[:PREVIEW_SEGMENTS]]
    if len(segments) > PREVIEW_SEGMENTS:
        lines.append(f"- … {len(segments) - PREVIEW_SEGMENTS} more segments")
    return "\n".join(lines)


def scenes_preview(scenes: Sequence[Scene]) -> str:
    header = "| scene | start | end | length (s) |\n|---|---|---|---|"
    rows = [
        f"| {s.index} | {preview_timestamp(s.start_seconds)} | {preview_timestamp(s.end_seconds)} | {s.end_seconds - s.start_seconds:.1f} |"
        for s in scenes[:20]
    ]
    more = [f"\n… {len(scenes) - 20} more"] if len(scenes) > 20 else []
    return "\n".join([header, *rows, *more])


def usage_facts(usage: Usage) -> dict[str, int | float]:
    """Requests, tokens, audio seconds and estimated cost; paid APIs show their bill here."""
    return {
        "api_requests": int(usage.requests),
        "audio_seconds": float(round(usage.audio_seconds, 2)),
        "images": int(usage.images),
        "input_tokens": int(usage.input_tokens),
        "output_tokens": int(usage.output_tokens),
        "estimated_cost_usd": float(round(usage.cost_usd, 6)),
    }

"""Stage 5, ``keyframes``: one JPEG per selected scene, stored as a blob.

Selection keeps the first and last scenes and spreads the rest evenly up to
``max_frames_per_video`` (:func:`videoqa_pipeline.media.select_scene_indices`). A re-run that
selects fewer scenes removes the JPEGs the previous run stored and this one did not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from videoqa_pipeline import media
from videoqa_pipeline.steps.errors import single_row
from videoqa_pipeline.steps.memory import measured
from videoqa_pipeline.steps.options import ProcessingOptions
from videoqa_pipeline.steps.previews import inline_thumbnails, keyframe_gallery
from videoqa_pipeline.steps.result import Fact, Markdown, StageResult
from videoqa_pipeline.steps.scenes import scenes_of
from videoqa_pipeline.storage.blobs import BlobStore, blob_key

logger = logging.getLogger(__name__)


def keyframe_key(video_id: str, scene_index: int) -> str:
    """The blob key of the keyframe of scene ``scene_index``."""
    return blob_key(video_id, "keyframes", f"scene-{scene_index:05d}.jpg")


def store_keyframes(
    frames: Sequence[media.Keyframe], scene_indices: Sequence[int], video_id: str, store: BlobStore
) -> list[dict[str, Any]]:
    """Put each JPEG in the blob store; one ``videoqa_keyframes`` row per frame."""
    rows = []
    for scene_index, frame in zip(scene_indices, frames, strict=True):
        key = keyframe_key(video_id, scene_index)
        store.put_bytes(key, frame.jpeg)
        rows.append(
            {
                "scene_index": scene_index,
                "timestamp_seconds": frame.timestamp,
                "blob_key": key,
                "width": frame.width,
                "height": frame.height,
                "size_bytes": len(frame.jpeg),
                "sharpness": frame.sharpness,
            }
        )
        logger.debug("keyframe of scene %d at %.2fs stored as %s", scene_index, frame.timestamp, key)
    return rows


def remove_stale_keyframes(video_id: str, store: BlobStore, kept: set[str]) -> list[str]:
    """Delete the video's keyframe blobs that are not in ``kept``; returns the deleted keys."""
    stale = sorted(set(store.list_keys(f"{video_id}/keyframes/")) - kept)
    for key in stale:
        store.delete_prefix(key)
    return stale


@measured
def extract_video_keyframes(
    scenes: pd.DataFrame,
    normalized_video: pd.DataFrame,
    video_id: str,
    store: BlobStore,
    options: ProcessingOptions,
) -> StageResult:
    """Extract, store and describe the keyframes of the selected scenes.

    Args:
        scenes: The video's ``scenes`` table.
        normalized_video: The video's ``normalized_video`` table (one row).

    Raises:
        StageInputError: ``normalized_video`` has no row for the video.
        MediaError: the video cannot be decoded at a keyframe's time.
    """
    normalized = single_row(normalized_video, "normalized_video", video_id)
    scene_list = scenes_of(scenes)
    selected = media.select_scene_indices(len(scene_list), options.max_frames_per_video)
    scene_indices = [scene_list[position].index for position in selected]
    started = time.perf_counter()
    with store.local_path(str(normalized["video_blob_key"])) as path:
        frames = media.extract_keyframes(
            path, media.keyframe_timestamps(scene_list, selected), max_width=options.keyframe_max_width
        )
    seconds = time.perf_counter() - started
    rows = store_keyframes(frames, scene_indices, video_id, store)
    removed = remove_stale_keyframes(video_id, store, {row["blob_key"] for row in rows})
    if removed:
        logger.info("removed %d keyframes of an earlier run of video %r", len(removed), video_id)
    facts: dict[str, Fact] = {
        "keyframes": len(rows),
        "scenes": len(scene_list),
        "max_frames_per_video": options.max_frames_per_video,
        "selected_scenes": scene_indices,
        "extract_seconds": float(round(seconds, 2)),
        "thumbnails": Markdown(keyframe_gallery(frames, scene_indices)),
    }
    for number, thumbnail in enumerate(inline_thumbnails(frames, scene_indices), start=1):
        facts[f"thumbnail_{number}"] = Markdown(thumbnail)
    return StageResult("keyframes", rows, facts, tuple(row["blob_key"] for row in rows))

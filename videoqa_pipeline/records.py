"""Rows of the pipeline's tables built from library results. Pure: no Dagster.

The assets and the benchmark's direct baseline build the same rows; keeping them here means
the two can never drift apart.
"""

from __future__ import annotations

from typing import Any

from videoqa_pipeline.media import MediaInfo


def source_video_row(source_uri: str, blob_key: str, sha256: str, info: MediaInfo) -> dict[str, Any]:
    """The ``videoqa_videos`` row of an original stored under ``blob_key``.

    Raises:
        ValueError: ``info`` has no video stream (probe with ``require_video=True`` first).
    """
    video, audio = info.video, info.audio
    if video is None:
        raise ValueError(f"{source_uri} has no video stream")
    return {
        "source_uri": source_uri,
        "blob_key": blob_key,
        "size_bytes": info.size,
        "sha256": sha256,
        "duration_seconds": info.duration,
        "container": info.container,
        "video_codec": video.codec,
        "width": video.width,
        "height": video.height,
        "fps": video.fps,
        "frame_count": video.frame_count,
        "vfr": video.vfr,
        "rotation": video.rotation,
        "has_audio": audio is not None,
        "audio_codec": audio.codec if audio else None,
        "audio_sample_rate": audio.sample_rate if audio else None,
        "audio_channels": audio.channels if audio else None,
    }

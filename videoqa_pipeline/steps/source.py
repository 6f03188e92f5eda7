"""Stage 1, ``source_video``: copy the original into the blob store and read its facts."""

from __future__ import annotations

from typing import Any

from videoqa_pipeline import media
from videoqa_pipeline.fetch import fetched_source, file_sha256
from videoqa_pipeline.media import MediaInfo
from videoqa_pipeline.steps.memory import measured
from videoqa_pipeline.steps.result import Location, StageResult
from videoqa_pipeline.storage.blobs import BlobStore, blob_key


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


@measured
def ingest_source(source_uri: str, video_id: str, store: BlobStore) -> StageResult:
    """Fetch ``source_uri`` (path, file://, s3://, http(s)://), probe it and store the original.

    The file is probed before it is stored, so bad input never reaches the blob store.

    Raises:
        SourceUnavailableError: the source cannot be read (``permanent`` says whether a retry helps).
        MediaError: the file is not a video (empty, truncated, no video stream, ...).
        S3StorageError: the blob store on S3 failed.
    """
    with fetched_source(source_uri) as local:
        info = media.probe(local)
        key = blob_key(video_id, "source", f"original{local.suffix.lower() or '.bin'}")
        uri = store.put_file(key, local)
        sha256 = file_sha256(local)
    row = source_video_row(source_uri, key, sha256, info)
    video, audio = info.video, info.audio
    assert video is not None  # source_video_row checked it
    return StageResult(
        "source_video",
        [row],
        {
            "source_uri": Location(source_uri),
            "blob": Location(uri),
            "duration_seconds": float(round(info.duration, 3)),
            "resolution": f"{video.width}x{video.height}",
            "fps": float(round(video.fps, 3)),
            "video_codec": video.codec,
            "audio": f"{audio.codec} {audio.sample_rate} Hz x{audio.channels}" if audio else "none",
            "size_mb": float(round(info.size / 1e6, 3)),
        },
        blobs=(key,),
    )

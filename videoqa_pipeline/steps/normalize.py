"""Stage 2, ``normalized_video``: an H.264 MP4 every later stage can read, and the audio as WAV."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd

from videoqa_pipeline import media
from videoqa_pipeline.steps.errors import single_row
from videoqa_pipeline.steps.memory import measured
from videoqa_pipeline.steps.options import ProcessingOptions
from videoqa_pipeline.steps.result import WARNING_FACT, Fact, Location, StageResult
from videoqa_pipeline.storage.blobs import BlobStore, blob_key


def audio_coverage_facts(coverage: media.Coverage | None) -> dict[str, Fact]:
    """Nothing when the audio decoded whole (or there is none); else how much did, and a warning.

    The WAV keeps the source's timeline either way (undecodable stretches are silence), so a
    transcript's times stay true; the warning says which stretches it cannot cover.
    """
    if coverage is None or coverage.complete:
        return {}
    facts: dict[str, Fact] = {f"audio_{name}": value for name, value in coverage.facts().items()}
    if coverage.decoded_seconds <= 0:
        facts[WARNING_FACT] = (
            "audio undecodable: no audio packet decodes; video only, the transcript is empty"
        )
    else:
        facts[WARNING_FACT] = (
            f"audio undecodable {coverage.undecodable_spans()}: transcript covers "
            f"{coverage.decoded_seconds:.1f} of {coverage.duration:.1f} s"
        )
    return facts


@measured
def normalize_video(
    source_video: pd.DataFrame, video_id: str, store: BlobStore, options: ProcessingOptions
) -> StageResult:
    """Normalize the stored original: height capped at ``options.normalize_height`` (never
    upscaled), re-encoded only when it is not H.264 already, plus a 16 kHz mono WAV when the
    video has sound.

    Args:
        source_video: The video's ``source_video`` table (one row).

    Raises:
        StageInputError: ``source_video`` has no row for the video.
        MediaError: ffmpeg could not read or write the video.
        S3StorageError: the blob store on S3 failed.
    """
    source = single_row(source_video, "source_video", video_id)
    started = time.perf_counter()
    with (
        store.local_path(str(source["blob_key"])) as original,
        tempfile.TemporaryDirectory(prefix="videoqa-normalize-") as tmp,
    ):
        result = media.normalize(
            original, Path(tmp), max_height=options.normalize_height, preset=options.normalize_preset
        )
        video_key = blob_key(video_id, "normalized", "video.mp4")
        video_uri = store.put_file(video_key, result.video_path)
        video_size = result.video_path.stat().st_size
        audio_key: str | None = None
        audio_size: int | None = None
        if result.audio_path is not None:
            audio_key = blob_key(video_id, "normalized", "audio.wav")
            store.put_file(audio_key, result.audio_path)
            audio_size = result.audio_path.stat().st_size
    seconds = time.perf_counter() - started
    row = {
        "video_blob_key": video_key,
        "audio_blob_key": audio_key,
        "width": result.width,
        "height": result.height,
        "fps": result.fps,
        "duration_seconds": result.duration,
        "video_size_bytes": video_size,
        "audio_size_bytes": audio_size,
    }
    encoding = (
        f"re-encoded (H.264, x264 preset {options.normalize_preset})"
        if result.reencoded
        else "stream copy (already H.264)"
    )
    facts: dict[str, Fact] = {
        "video": Location(video_uri),
        "resolution": f"{result.width}x{result.height}",
        "has_audio": audio_key is not None,
        "video_encoding": encoding,
        "size_mb": float(round(video_size / 1e6, 3)),
        "normalize_seconds": float(round(seconds, 2)),
        "speed_x_realtime": float(round(result.duration / seconds, 2) if seconds else 0.0),
        **audio_coverage_facts(result.audio_coverage),
    }
    blobs = (video_key,) if audio_key is None else (video_key, audio_key)
    return StageResult("normalized_video", [row], facts, blobs)

"""The video pipeline as Dagster assets, one partition per video.

Assets stay thin: each wires resources to a pure function of ``media/`` or ``ai/``, turns
the result into a typed table (the IO manager stores it, one transaction per partition)
and attaches the metadata a person wants to see in the UI. Bad input raises
``Failure(allow_retries=False)`` so it fails fast; everything else is retried by the
step's retry policy.
"""

import contextlib
import functools
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from videoqa_pipeline import media
from videoqa_pipeline.ai import AIProviderError, FrameAnalysis, Usage
from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.hooks import record_run_start
from videoqa_pipeline.defs.partitions import videos_partitions
from videoqa_pipeline.defs.resources import AIResource, BlobStoreResource, DatabaseResource
from videoqa_pipeline.fetch import SourceUnavailableError, fetched_source, file_sha256
from videoqa_pipeline.indexing import IndexItem, TimedText, frame_text, transcript_chunks
from videoqa_pipeline.presentation import (
    format_timestamp,
    keyframe_gallery,
    scenes_preview,
    transcript_preview,
    usage_metadata,
)
from videoqa_pipeline.records import source_video_row
from videoqa_pipeline.run_tags import SOURCE_URI_TAG
from videoqa_pipeline.settings import Settings, load_settings
from videoqa_pipeline.storage.blobs import blob_key
from videoqa_pipeline.storage.ledger import lookup_source
from videoqa_pipeline.storage.s3_blobs import S3StorageError
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.video_ids import SAMPLE_VIDEO_ID

AI_POOL = "videoqa_ai"
TRANSCODE_POOL = "videoqa_transcode"
FRAME_BATCH_SIZE = 16


@contextlib.contextmanager
def reported_as_failure(step: str, video_id: str) -> Iterator[None]:
    """Turn library errors into Dagster failures a user can read.

    Permanent errors (bad input, 4xx from an API, a missing S3 bucket) become
    ``Failure(allow_retries=False)``;
    transient ones are re-raised untouched so the step's RetryPolicy retries them.
    """
    try:
        yield
    except (media.MediaError, AIProviderError, SourceUnavailableError, S3StorageError) as error:
        if not getattr(error, "permanent", True):
            raise
        raise dg.Failure(
            description=f"{step} failed for video {video_id!r}: {error}",
            metadata={"video_id": video_id, "step": step, "error_type": type(error).__name__},
            allow_retries=False,
        ) from error


def _resolve_source_uri(context: dg.AssetExecutionContext, database: DatabaseResource) -> str:
    video_id = context.partition_key
    tagged = context.run.tags.get(SOURCE_URI_TAG)
    if tagged:
        return tagged
    registered = lookup_source(database.get(), video_id)
    if registered:
        return registered
    if video_id == SAMPLE_VIDEO_ID:
        return str(media.bundled_sample_video())
    raise dg.Failure(
        description=(
            f"no source is known for video {video_id!r}: submit it with `videoqa process PATH --video-id {video_id}` "
            f"(or `videoqa submit`), or launch the run with the tag {SOURCE_URI_TAG}=<path or URI>"
        ),
        allow_retries=False,
    )


def _table(asset_name: str, rows: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """A frame with exactly the columns of the asset's table, in table order (empty when no rows)."""
    return pd.DataFrame(rows or [], columns=list(TABLES[asset_name].data_column_names))


def _single_row(frame: pd.DataFrame, asset_name: str, video_id: str) -> pd.Series:
    if len(frame) != 1:
        raise dg.Failure(
            description=f"{asset_name} has {len(frame)} rows for video {video_id!r}; materialize it again first",
            allow_retries=False,
        )
    return frame.iloc[0]


def build_video_assets(max_attempts: int = 3) -> list[dg.AssetsDefinition]:
    """The seven per-video assets with a retry policy of ``max_attempts`` attempts per step."""
    retry_policy = dg.RetryPolicy(
        max_retries=max(0, max_attempts - 1),
        delay=2.0,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )
    # Every stage: one partition per video, the same retry policy.
    video_asset = functools.partial(dg.asset, partitions_def=videos_partitions, retry_policy=retry_policy)

    @video_asset(
        group_name="ingest",
        kinds={"ffmpeg", "postgres"},
        description="The original video, copied to the blob store, with the facts ffprobe reads from it.",
    )
    def source_video(
        context: dg.AssetExecutionContext,
        pipeline_config: PipelineConfig,
        database: DatabaseResource,
        blob_store: BlobStoreResource,
    ) -> dg.Output[pd.DataFrame]:
        video_id = context.partition_key
        # The run marks its own job running (sensors may lag); a cancelled job stops here.
        record_run_start(context.run, database.get())
        context.log.info("processing options: %s", pipeline_config.model_dump())
        source_uri = _resolve_source_uri(context, database)
        store = blob_store.get()
        with reported_as_failure("source_video", video_id), fetched_source(source_uri) as local:
            info = media.probe(local)
            suffix = local.suffix.lower() or ".bin"
            key = blob_key(video_id, "source", f"original{suffix}")
            uri = store.put_file(key, local)
            sha256 = file_sha256(local)
        video = info.video
        assert video is not None  # probe(require_video=True) guarantees a video stream
        audio = info.audio
        row = source_video_row(source_uri, key, sha256, info)
        return dg.Output(
            _table("source_video", [row]),
            metadata={
                "source_uri": dg.MetadataValue.path(source_uri),
                "blob": dg.MetadataValue.path(uri),
                "duration_seconds": dg.MetadataValue.float(round(info.duration, 3)),
                "resolution": f"{video.width}x{video.height}",
                "fps": dg.MetadataValue.float(round(video.fps, 3)),
                "video_codec": video.codec,
                "audio": f"{audio.codec} {audio.sample_rate} Hz x{audio.channels}" if audio else "none",
                "size_mb": dg.MetadataValue.float(round(info.size / 1e6, 3)),
            },
        )

    @video_asset(
        group_name="ingest",
        kinds={"ffmpeg"},
        pool=TRANSCODE_POOL,
        description="H.264 MP4 (height capped, never upscaled) and a 16 kHz mono WAV when the video has sound.",
    )
    def normalized_video(
        context: dg.AssetExecutionContext,
        source_video: pd.DataFrame,
        pipeline_config: PipelineConfig,
        blob_store: BlobStoreResource,
    ) -> dg.Output[pd.DataFrame]:
        video_id = context.partition_key
        source = _single_row(source_video, "source_video", video_id)
        store = blob_store.get()
        started = time.perf_counter()
        with (
            reported_as_failure("normalized_video", video_id),
            store.local_path(str(source["blob_key"])) as original,
            tempfile.TemporaryDirectory(prefix="videoqa-normalize-") as tmp,
        ):
            result = media.normalize(
                original,
                Path(tmp),
                max_height=pipeline_config.normalize_height,
                preset=pipeline_config.normalize_preset,
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
        return dg.Output(
            _table("normalized_video", [row]),
            metadata={
                "video": dg.MetadataValue.path(video_uri),
                "resolution": f"{result.width}x{result.height}",
                "has_audio": audio_key is not None,
                "video_encoding": (
                    f"re-encoded (H.264, x264 preset {pipeline_config.normalize_preset})"
                    if result.reencoded
                    else "stream copy (already H.264)"
                ),
                "size_mb": dg.MetadataValue.float(round(video_size / 1e6, 3)),
                "normalize_seconds": dg.MetadataValue.float(round(seconds, 2)),
                "speed_x_realtime": dg.MetadataValue.float(
                    round(result.duration / seconds, 2) if seconds else 0.0
                ),
            },
        )

    @video_asset(
        group_name="analysis",
        kinds={"whisper"},
        pool=AI_POOL,
        description="Speech as timed segments (with word times when the model gives them); empty when silent or disabled.",
    )
    def transcript(
        context: dg.AssetExecutionContext,
        normalized_video: pd.DataFrame,
        pipeline_config: PipelineConfig,
        blob_store: BlobStoreResource,
        ai: AIResource,
    ) -> dg.Output[pd.DataFrame]:
        video_id = context.partition_key
        normalized = _single_row(normalized_video, "normalized_video", video_id)
        audio_key = normalized["audio_blob_key"]
        if not pipeline_config.enable_transcription or audio_key is None or pd.isna(audio_key):
            reason = (
                "transcription disabled" if not pipeline_config.enable_transcription else "video has no audio"
            )
            return dg.Output(_table("transcript"), metadata={"skipped": reason, "segments": 0})
        started = time.perf_counter()
        with reported_as_failure("transcript", video_id), blob_store.get().local_path(str(audio_key)) as wav:
            result = ai.transcriber().transcribe(wav, language=pipeline_config.language)
        seconds = time.perf_counter() - started
        rows = [
            {
                "segment_index": index,
                "start_seconds": segment.start,
                "end_seconds": segment.end,
                "text": segment.text.strip(),
                "words": [
                    {"start": w.start, "end": w.end, "text": w.text, "probability": w.probability}
                    for w in segment.words
                ]
                or None,
                "language": result.language,
                "model": result.model,
            }
            for index, segment in enumerate(result.segments)
        ]
        words = sum(len(segment.text.split()) for segment in result.segments)
        return dg.Output(
            _table("transcript", rows),
            metadata={
                "model": result.model,
                "language": result.language or "unknown",
                "segments": len(rows),
                "words": words,
                "transcribe_seconds": dg.MetadataValue.float(round(seconds, 2)),
                "real_time_factor": dg.MetadataValue.float(
                    round(seconds / result.duration, 3) if result.duration else 0.0
                ),
                "preview": dg.MetadataValue.md(transcript_preview(result.segments)),
                **usage_metadata(result.usage),
            },
        )

    @video_asset(
        group_name="analysis",
        kinds={"opencv"},
        description="Shots found by PySceneDetect; a video without cuts is one scene.",
    )
    def scenes(
        context: dg.AssetExecutionContext,
        normalized_video: pd.DataFrame,
        pipeline_config: PipelineConfig,
        blob_store: BlobStoreResource,
    ) -> dg.Output[pd.DataFrame]:
        video_id = context.partition_key
        normalized = _single_row(normalized_video, "normalized_video", video_id)
        started = time.perf_counter()
        with (
            reported_as_failure("scenes", video_id),
            blob_store.get().local_path(str(normalized["video_blob_key"])) as path,
        ):
            found = media.detect_scenes(
                path,
                detector=pipeline_config.scene_detector,
                threshold=pipeline_config.scene_threshold,
                min_scene_len_seconds=pipeline_config.min_scene_seconds,
            )
        seconds = time.perf_counter() - started
        frame = _table(
            "scenes",
            [
                {
                    "scene_index": scene.index,
                    "start_seconds": scene.start_seconds,
                    "end_seconds": scene.end_seconds,
                    "start_frame": scene.start_frame,
                    "end_frame": scene.end_frame,
                }
                for scene in found
            ],
        )
        lengths = frame["end_seconds"] - frame["start_seconds"]
        return dg.Output(
            frame,
            metadata={
                "scenes": len(frame),
                "detector": pipeline_config.scene_detector,
                "mean_scene_seconds": dg.MetadataValue.float(
                    round(float(lengths.mean()), 2) if len(frame) else 0.0
                ),
                "detect_seconds": dg.MetadataValue.float(round(seconds, 2)),
                "preview": dg.MetadataValue.md(scenes_preview(found)),
            },
        )

    @video_asset(
        group_name="analysis",
        kinds={"ffmpeg"},
        description="One JPEG per selected scene: first and last scenes always, the rest spread evenly up to max_frames_per_video.",
    )
    def keyframes(
        context: dg.AssetExecutionContext,
        scenes: pd.DataFrame,
        normalized_video: pd.DataFrame,
        pipeline_config: PipelineConfig,
        blob_store: BlobStoreResource,
    ) -> dg.Output[pd.DataFrame]:
        video_id = context.partition_key
        normalized = _single_row(normalized_video, "normalized_video", video_id)
        scene_list = [
            media.Scene(
                index=int(row.scene_index),
                start_seconds=float(row.start_seconds),
                end_seconds=float(row.end_seconds),
                start_frame=int(row.start_frame),
                end_frame=int(row.end_frame),
            )
            for row in scenes.sort_values("scene_index").itertuples()
        ]
        selected = media.select_scene_indices(len(scene_list), pipeline_config.max_frames_per_video)
        timestamps = media.keyframe_timestamps(scene_list, selected)
        store = blob_store.get()
        started = time.perf_counter()
        with (
            reported_as_failure("keyframes", video_id),
            store.local_path(str(normalized["video_blob_key"])) as path,
        ):
            extracted = media.extract_keyframes(
                path, timestamps, max_width=pipeline_config.keyframe_max_width
            )
        seconds = time.perf_counter() - started
        rows = []
        for position, (scene_position, frame) in enumerate(zip(selected, extracted, strict=True)):
            scene_index = scene_list[scene_position].index
            key = blob_key(video_id, "keyframes", f"scene-{scene_index:05d}.jpg")
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
            context.log.debug("keyframe %d: scene %d at %.2fs", position, scene_index, frame.timestamp)
        # A re-run that selects fewer scenes must not leave the previous run's JPEGs behind.
        kept = {row["blob_key"] for row in rows}
        with reported_as_failure("keyframes", video_id):
            for stale in set(store.list_keys(f"{video_id}/keyframes/")) - kept:
                store.delete_prefix(stale)
        return dg.Output(
            _table("keyframes", rows),
            metadata={
                "keyframes": len(rows),
                "scenes": len(scene_list),
                "max_frames_per_video": pipeline_config.max_frames_per_video,
                "selected_scenes": dg.MetadataValue.json([scene_list[i].index for i in selected]),
                "extract_seconds": dg.MetadataValue.float(round(seconds, 2)),
                "thumbnails": dg.MetadataValue.md(
                    keyframe_gallery(extracted, [scene_list[i].index for i in selected])
                ),
            },
        )

    @video_asset(
        group_name="analysis",
        kinds={"onnx"},
        pool=AI_POOL,
        description="What each keyframe shows: caption or description, labels and on-screen text (OCR).",
    )
    def frame_analyses(
        context: dg.AssetExecutionContext,
        keyframes: pd.DataFrame,
        pipeline_config: PipelineConfig,
        blob_store: BlobStoreResource,
        ai: AIResource,
    ) -> dg.Output[pd.DataFrame]:
        video_id = context.partition_key
        if not pipeline_config.enable_vision_analysis or keyframes.empty:
            reason = (
                "vision analysis disabled" if not pipeline_config.enable_vision_analysis else "no keyframes"
            )
            return dg.Output(_table("frame_analyses"), metadata={"skipped": reason, "frames": 0})
        store = blob_store.get()
        ordered = keyframes.sort_values("scene_index")
        analyzer = ai.frame_analyzer()
        keys = [str(key) for key in ordered["blob_key"]]
        analyses: list[FrameAnalysis] = []
        usage = Usage()
        started = time.perf_counter()
        with reported_as_failure("frame_analyses", video_id):
            # Bounded batches: only a few JPEGs are in memory at once, however many keyframes.
            for first in range(0, len(keys), FRAME_BATCH_SIZE):
                images = [store.get_bytes(key) for key in keys[first : first + FRAME_BATCH_SIZE]]
                batch = analyzer.analyze(images)
                analyses.extend(batch.analyses)
                usage = usage + batch.usage
        seconds = time.perf_counter() - started
        rows = [
            {
                "scene_index": int(row.scene_index),
                "timestamp_seconds": float(row.timestamp_seconds),
                "caption": analysis.caption,
                "labels": list(analysis.labels),
                "ocr_text": analysis.ocr_text,
                "model": analysis.model,
            }
            for row, analysis in zip(ordered.itertuples(), analyses, strict=True)
        ]
        with_text = sum(1 for analysis in analyses if analysis.ocr_text.strip())
        preview = "\n".join(
            f"- **{format_timestamp(float(row.timestamp_seconds))}** "
            f"{frame_text(analysis.caption, analysis.labels, analysis.ocr_text)[:160]}"
            for row, analysis in list(zip(ordered.itertuples(), analyses, strict=True))[:10]
        )
        return dg.Output(
            _table("frame_analyses", rows),
            metadata={
                "model": analyzer.model_name,
                "frames": len(rows),
                "frames_with_text": with_text,
                "ms_per_frame": dg.MetadataValue.float(round(1000 * seconds / max(1, len(rows)), 1)),
                "preview": dg.MetadataValue.md(preview or "(nothing found)"),
                **usage_metadata(usage),
            },
        )

    @video_asset(
        group_name="index",
        kinds={"pgvector"},
        pool=AI_POOL,
        description="Vectors for transcript chunks (aligned to scenes) and keyframe texts: what search and ask read.",
    )
    def embeddings(
        context: dg.AssetExecutionContext,
        transcript: pd.DataFrame,
        scenes: pd.DataFrame,
        frame_analyses: pd.DataFrame,
        pipeline_config: PipelineConfig,
        ai: AIResource,
    ) -> dg.Output[pd.DataFrame]:
        video_id = context.partition_key
        if not pipeline_config.enable_embeddings:
            return dg.Output(_table("embeddings"), metadata={"skipped": "embeddings disabled", "items": 0})
        segments = [
            TimedText(float(row.start_seconds), float(row.end_seconds), str(row.text))
            for row in transcript.sort_values("segment_index").itertuples()
        ]
        bounds = [
            (float(row.start_seconds), float(row.end_seconds))
            for row in scenes.sort_values("scene_index").itertuples()
        ]
        items: list[IndexItem] = transcript_chunks(segments, bounds)
        for row in frame_analyses.sort_values("scene_index").itertuples():
            text = frame_text(
                row.caption, list(row.labels) if row.labels is not None else [], str(row.ocr_text or "")
            )
            if text:
                scene = int(row.scene_index)
                start, end = (
                    bounds[scene]
                    if 0 <= scene < len(bounds)
                    else (row.timestamp_seconds, row.timestamp_seconds)
                )
                items.append(IndexItem("frame", float(start), float(end), text))
        if not items:
            return dg.Output(_table("embeddings"), metadata={"skipped": "nothing to embed", "items": 0})
        started = time.perf_counter()
        with reported_as_failure("embeddings", video_id):
            batch = ai.embedder().embed([item.text for item in items])
        seconds = time.perf_counter() - started
        rows = [
            {
                "item_index": index,
                "kind": item.kind,
                "start_seconds": item.start,
                "end_seconds": item.end,
                "text": item.text,
                "model": batch.model,
                "dimension": batch.dimension,
                "embedding": vector,
            }
            for index, (item, vector) in enumerate(zip(items, batch.vectors, strict=True))
        ]
        return dg.Output(
            _table("embeddings", rows),
            metadata={
                "model": batch.model,
                "dimension": batch.dimension,
                "items": len(rows),
                "transcript_chunks": sum(1 for item in items if item.kind == "transcript"),
                "frame_texts": sum(1 for item in items if item.kind == "frame"),
                "embed_seconds": dg.MetadataValue.float(round(seconds, 3)),
                **usage_metadata(batch.usage),
            },
        )

    return [source_video, normalized_video, transcript, scenes, keyframes, frame_analyses, embeddings]


def asset_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=build_video_assets(settings.worker_max_attempts))


@dg.definitions
def video_assets() -> dg.Definitions:
    """The per-video assets for this process's settings."""
    return asset_definitions(load_settings())

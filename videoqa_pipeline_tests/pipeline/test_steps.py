"""The stage functions on real media, and the thin assets that call them.

The stages (``videoqa_pipeline.steps``) run here without Dagster: real ffmpeg, the offline models,
a local blob store. Then each asset module is exercised the way Dagster runs it (materialized, or
invoked directly with ``build_asset_context`` and real resources) to show it only adds metadata
and the mapping of errors onto failures.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from videoqa_pipeline import media, steps
from videoqa_pipeline.ai import (
    FrameAnalysisBatch,
    FrameAnalyzer,
    get_embedder,
    get_frame_analyzer,
    get_transcriber,
)
from videoqa_pipeline.defs.assets import analysis, common, index, ingest
from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.partitions import videos_partitions
from videoqa_pipeline.defs.resources import AIResource, BlobStoreResource, build_resources
from videoqa_pipeline.fetch import file_sha256
from videoqa_pipeline.run_tags import SOURCE_URI_TAG
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.steps import memory
from videoqa_pipeline.steps.frame_analysis import batches
from videoqa_pipeline.steps.previews import INLINE_MARKDOWN_LIMIT, inline_thumbnail
from videoqa_pipeline.steps.scenes import scenes_of
from videoqa_pipeline.storage.blobs import LocalBlobStore
from videoqa_pipeline.storage.ledger import lookup_source
from videoqa_pipeline.storage.s3_blobs import S3StorageError
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import read_partition

PACKAGE = Path(steps.__file__).resolve().parents[1]
VIDEO_ID = "steps-talk"
OPTIONS = steps.ProcessingOptions()


def _never(what: str) -> Callable[[], Any]:
    """A provider factory for a stage that must not load a model."""

    def factory() -> Any:
        raise AssertionError(f"the {what} must not be loaded when the stage has nothing to do")

    return factory


class RecordingAnalyzer:
    """The real frame analyzer, remembering how many images each call got."""

    def __init__(self, inner: FrameAnalyzer) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.batch_sizes: list[int] = []

    def analyze(self, images: Sequence[bytes]) -> FrameAnalysisBatch:
        self.batch_sizes.append(len(images))
        return self.inner.analyze(images)


@dataclasses.dataclass
class Chain:
    """Every stage of one video, run in order on a local blob store."""

    store: LocalBlobStore
    root: Path
    results: dict[str, steps.StageResult]

    def frame(self, table: str) -> pd.DataFrame:
        return self.results[table].frame()


@pytest.fixture(scope="module")
def chain(
    settings: Settings, talk_video: media.SampleVideo, tmp_path_factory: pytest.TempPathFactory
) -> Chain:
    root = tmp_path_factory.mktemp("steps-blobs")
    store = LocalBlobStore(root)
    results: dict[str, steps.StageResult] = {}
    results["source_video"] = steps.ingest_source(str(talk_video.path), VIDEO_ID, store)
    normalized = results["normalized_video"] = steps.normalize_video(
        results["source_video"].frame(), VIDEO_ID, store, OPTIONS
    )
    results["transcript"] = steps.transcribe_audio(
        normalized.frame(), VIDEO_ID, store, partial(get_transcriber, settings.ai), OPTIONS
    )
    results["scenes"] = steps.detect_video_scenes(normalized.frame(), VIDEO_ID, store, OPTIONS)
    results["keyframes"] = steps.extract_video_keyframes(
        results["scenes"].frame(), normalized.frame(), VIDEO_ID, store, OPTIONS
    )
    results["frame_analyses"] = steps.analyze_keyframes(
        results["keyframes"].frame(), VIDEO_ID, store, partial(get_frame_analyzer, settings.ai), OPTIONS
    )
    results["embeddings"] = steps.embed_video(
        results["transcript"].frame(),
        results["scenes"].frame(),
        results["frame_analyses"].frame(),
        partial(get_embedder, settings.ai),
        OPTIONS,
    )
    return Chain(store, root, results)


# --- the stage functions, without Dagster ---


def test_steps_load_without_dagster() -> None:
    code = "import sys, videoqa_pipeline.steps; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout[:300]


def test_processing_options_are_read_from_the_run_config() -> None:
    options = steps.ProcessingOptions.of(PipelineConfig(max_frames_per_video=3, language="en"))
    assert options.max_frames_per_video == 3 and options.language == "en"


def test_every_stage_writes_its_tables_columns(chain: Chain) -> None:
    for table, result in chain.results.items():
        assert result.table == table
        assert list(result.frame().columns) == list(TABLES[table].data_column_names)
        assert result.skipped is None, (table, result.facts)
    with pytest.raises(ValueError, match="unknown table"):
        steps.StageResult("not_a_table", [])


def test_ingest_stores_the_original_and_reads_its_facts(chain: Chain, talk_video: media.SampleVideo) -> None:
    result = chain.results["source_video"]
    (row,) = result.rows
    assert result.blobs == (row["blob_key"],) == (f"{VIDEO_ID}/source/original.mp4",)
    assert chain.store.get_bytes(row["blob_key"]) == talk_video.path.read_bytes()
    assert row["sha256"] == file_sha256(talk_video.path)
    assert (row["width"], row["height"], row["has_audio"]) == (640, 360, True)
    assert result.facts["source_uri"] == steps.Location(str(talk_video.path))
    assert result.facts["resolution"] == "640x360"
    assert isinstance(result.facts["duration_seconds"], float) and result.facts["duration_seconds"] > 20


@pytest.mark.parametrize("case", ["text", "truncated", "audio_only"])
def test_ingest_rejects_bad_input_before_storing_anything(
    bad_inputs: dict[str, Path], tmp_path: Path, case: str
) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(steps.STAGE_ERRORS) as raised:
        steps.ingest_source(str(bad_inputs[case]), f"bad-{case}", store)
    assert isinstance(raised.value, media.MediaError) and raised.value.permanent
    assert list(store.list_keys()) == []


def test_normalize_stores_video_and_audio(chain: Chain, tmp_path: Path) -> None:
    result = chain.results["normalized_video"]
    (row,) = result.rows
    assert result.blobs == (row["video_blob_key"], row["audio_blob_key"])
    assert media.probe(chain.root / row["video_blob_key"]).video is not None
    assert media.probe(chain.root / row["audio_blob_key"], require_video=False).audio is not None
    assert result.facts["has_audio"] is True and result.facts["video"] == steps.Location(
        chain.store.uri(row["video_blob_key"])
    )


def test_normalize_reencodes_to_the_configured_height(chain: Chain, tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    source = chain.frame("source_video")
    store.put_file(str(source["blob_key"].iloc[0]), chain.root / str(source["blob_key"].iloc[0]))
    options = OPTIONS.model_copy(update=dict(normalize_height=144, normalize_preset="ultrafast"))
    result = steps.normalize_video(source, VIDEO_ID, store, options)
    assert result.rows[0]["height"] == 144
    assert result.facts["video_encoding"] == "re-encoded (H.264, x264 preset ultrafast)"


@pytest.mark.parametrize(
    ("stage", "call"),
    [
        ("normalized_video", lambda store: steps.normalize_video(pd.DataFrame(), "v", store, OPTIONS)),
        (
            "transcript",
            lambda store: steps.transcribe_audio(pd.DataFrame(), "v", store, _never("transcriber"), OPTIONS),
        ),
        ("scenes", lambda store: steps.detect_video_scenes(pd.DataFrame(), "v", store, OPTIONS)),
        (
            "keyframes",
            lambda store: steps.extract_video_keyframes(
                pd.DataFrame(columns=list(TABLES["scenes"].data_column_names)),
                pd.DataFrame(),
                "v",
                store,
                OPTIONS,
            ),
        ),
    ],
)
def test_a_missing_upstream_row_is_a_permanent_stage_error(
    tmp_path: Path, stage: str, call: Callable[[LocalBlobStore], steps.StageResult]
) -> None:
    with pytest.raises(
        steps.StageInputError, match=r"has 0 rows for video 'v'; materialize it again first"
    ) as raised:
        call(LocalBlobStore(tmp_path))
    assert raised.value.permanent, stage


def test_transcribe_gives_timed_segments_with_words(chain: Chain) -> None:
    result = chain.results["transcript"]
    assert [row["segment_index"] for row in result.rows] == list(range(len(result.rows)))
    heard = set(re.findall(r"[a-z]+", " ".join(row["text"] for row in result.rows).lower()))
    assert {"museum", "visitors", "postcards"} <= heard, heard
    assert all(row["start_seconds"] < row["end_seconds"] for row in result.rows)
    words = result.facts["words"]
    assert result.facts["segments"] == len(result.rows) and isinstance(words, int) and words > 10
    preview = result.facts["preview"]
    assert isinstance(preview, steps.Markdown) and "museum" in preview.text.lower()
    assert result.facts["estimated_cost_usd"] == 0.0, "offline models cost nothing"
    assert {"api_requests", "audio_seconds", "input_tokens", "output_tokens"} <= set(result.facts)


def test_transcribe_skips_without_loading_a_model(
    chain: Chain, silent_video: media.SampleVideo, tmp_path: Path
) -> None:
    disabled = OPTIONS.model_copy(update=dict(enable_transcription=False))
    result = steps.transcribe_audio(
        chain.frame("normalized_video"), VIDEO_ID, chain.store, _never("transcriber"), disabled
    )
    assert (result.rows, result.skipped) == ([], "transcription disabled")
    store = LocalBlobStore(tmp_path)
    source = steps.ingest_source(str(silent_video.path), "silent", store)
    normalized = steps.normalize_video(source.frame(), "silent", store, OPTIONS)
    silent = steps.transcribe_audio(normalized.frame(), "silent", store, _never("transcriber"), OPTIONS)
    assert (silent.rows, silent.skipped, silent.facts["segments"]) == ([], "video has no audio", 0)
    assert len(silent.frame()) == 0 and list(silent.frame().columns) == list(
        TABLES["transcript"].data_column_names
    )


def test_scenes_follow_the_cuts_and_read_back(chain: Chain, talk_video: media.SampleVideo) -> None:
    result = chain.results["scenes"]
    assert len(result.rows) == len(talk_video.cut_times) + 1 == result.facts["scenes"]
    assert [row["scene_index"] for row in result.rows] == list(range(len(result.rows)))
    for cut, row in zip(talk_video.cut_times, result.rows[1:], strict=True):
        assert abs(row["start_seconds"] - cut) < 0.2
    found = scenes_of(result.frame().sample(frac=1.0, random_state=1))  # any row order
    assert [dataclasses.astuple(scene) for scene in found] == [tuple(row.values()) for row in result.rows]
    assert isinstance(result.facts["preview"], steps.Markdown)


def test_keyframes_are_stored_with_thumbnails(chain: Chain) -> None:
    result = chain.results["keyframes"]
    assert [row["scene_index"] for row in result.rows] == [0, 1, 2, 3, 4]
    assert result.blobs == tuple(row["blob_key"] for row in result.rows)
    for row in result.rows:
        assert chain.store.get_bytes(row["blob_key"])[:2] == b"\xff\xd8"  # a JPEG
    gallery = result.facts["thumbnails"]
    assert isinstance(gallery, steps.Markdown) and gallery.text.startswith("5 of 5 keyframes")
    inline = [result.facts[f"thumbnail_{n}"] for n in (1, 2, 3, 4)]
    assert "thumbnail_5" not in result.facts
    texts = []
    for thumbnail in inline:
        assert isinstance(thumbnail, steps.Markdown)
        texts.append(thumbnail.text)
        assert len(thumbnail.text) < INLINE_MARKDOWN_LIMIT, "the UI shows it in place only when short"
        assert "](data:image/webp;base64," in thumbnail.text
    assert texts[0].endswith("scene 0 at 00:02.5") and texts[-1].endswith("scene 4 at 00:22.5")


def test_keyframes_of_an_earlier_run_are_removed(chain: Chain, tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    normalized = chain.frame("normalized_video")
    video_key = str(normalized["video_blob_key"].iloc[0])
    store.put_file(video_key, chain.root / video_key)
    scenes = chain.frame("scenes")
    steps.extract_video_keyframes(scenes, normalized, VIDEO_ID, store, OPTIONS)
    assert len(list(store.list_keys(f"{VIDEO_ID}/keyframes/"))) == 5
    fewer = steps.extract_video_keyframes(
        scenes, normalized, VIDEO_ID, store, OPTIONS.model_copy(update=dict(max_frames_per_video=3))
    )
    assert [row["scene_index"] for row in fewer.rows] == [0, 2, 4]
    assert sorted(store.list_keys(f"{VIDEO_ID}/keyframes/")) == sorted(fewer.blobs)
    assert store.exists(video_key), "only keyframes are cleaned up"


def test_frame_analysis_reads_keyframes_in_bounded_batches(chain: Chain, settings: Settings) -> None:
    recording = RecordingAnalyzer(get_frame_analyzer(settings.ai))
    result = steps.analyze_keyframes(
        chain.frame("keyframes"), VIDEO_ID, chain.store, lambda: recording, OPTIONS, batch_size=2
    )
    assert recording.batch_sizes == [2, 2, 1]
    keyframes = chain.results["keyframes"].rows
    assert [(row["scene_index"], row["timestamp_seconds"]) for row in result.rows] == [
        (row["scene_index"], row["timestamp_seconds"]) for row in keyframes
    ]
    # Batching does not change what is read (the offline colour labels come from k-means, which is
    # not deterministic, so only the OCR text is compared).
    assert [row["ocr_text"] for row in result.rows] == [
        row["ocr_text"] for row in chain.results["frame_analyses"].rows
    ]
    texts = " ".join(row["ocr_text"] for row in result.rows)
    assert result.facts["frames"] == 5 and result.facts["model"] == recording.model_name
    assert isinstance(result.facts["preview"], steps.Markdown)
    assert result.facts["frames_with_text"] == sum(1 for row in result.rows if row["ocr_text"].strip()), texts
    assert list(batches(["a", "b", "c"], 16)) == [["a", "b", "c"]]
    with pytest.raises(ValueError, match="at least 1"):
        list(batches(["a"], 0))


def test_frame_analysis_skips_without_loading_a_model(chain: Chain) -> None:
    disabled = OPTIONS.model_copy(update=dict(enable_vision_analysis=False))
    off = steps.analyze_keyframes(
        chain.frame("keyframes"), VIDEO_ID, chain.store, _never("analyzer"), disabled
    )
    none = steps.analyze_keyframes(
        chain.frame("keyframes").iloc[0:0], VIDEO_ID, chain.store, _never("analyzer"), OPTIONS
    )
    assert (off.skipped, none.skipped) == ("vision analysis disabled", "no keyframes")
    assert off.rows == none.rows == []


def test_embeddings_cover_transcript_chunks_and_frame_texts(chain: Chain) -> None:
    result = chain.results["embeddings"]
    kinds = [row["kind"] for row in result.rows]
    assert set(kinds) == {"transcript", "frame"}
    assert [row["item_index"] for row in result.rows] == list(range(len(result.rows)))
    assert all(row["dimension"] == 384 and len(row["embedding"]) == 384 for row in result.rows)
    assert result.facts["transcript_chunks"] == kinds.count("transcript")
    assert result.facts["frame_texts"] == kinds.count("frame")
    scenes = {(row["start_seconds"], row["end_seconds"]) for row in chain.results["scenes"].rows}
    assert all(
        (row["start_seconds"], row["end_seconds"]) in scenes for row in result.rows if row["kind"] == "frame"
    )


def test_transcript_reports_how_sure_the_language_detection_was(chain: Chain) -> None:
    facts = chain.results["transcript"].facts
    probability = facts["language_probability"]
    assert facts["language"] == "en" and isinstance(probability, float) and 0.5 < probability <= 1.0
    given = steps.transcribe_audio(
        chain.frame("normalized_video"),
        VIDEO_ID,
        chain.store,
        partial(get_transcriber, Settings.from_env({}).ai),
        OPTIONS.model_copy(update=dict(language="en")),
    )
    assert given.facts["language"] == "en" and given.facts["language_probability"] is None


def test_every_stage_reports_its_peak_resident_memory(chain: Chain) -> None:
    for table, result in chain.results.items():
        peak = result.facts[memory.PEAK_RSS_FACT]
        assert isinstance(peak, float) and peak > 0, (table, result.facts)


def test_ai_stages_release_their_offline_models(chain: Chain, settings: Settings) -> None:
    """A run worker processes one video: after its stage, no model stays for the later stages."""
    transcriber, analyzer, embedder = (
        get_transcriber(settings.ai),
        get_frame_analyzer(settings.ai),
        get_embedder(settings.ai),
    )
    providers = (transcriber, analyzer, embedder)
    again = {
        "transcript": steps.transcribe_audio(
            chain.frame("normalized_video"), VIDEO_ID, chain.store, lambda: transcriber, OPTIONS
        ),
        "frame_analyses": steps.analyze_keyframes(
            chain.frame("keyframes"), VIDEO_ID, chain.store, lambda: analyzer, OPTIONS
        ),
        "embeddings": steps.embed_video(
            chain.frame("transcript"),
            chain.frame("scenes"),
            chain.frame("frame_analyses"),
            lambda: embedder,
            OPTIONS,
        ),
    }
    assert [provider.loaded for provider in providers] == [False, False, False]
    # Loaded again on demand, with the same results as the first time (the colour facts of a
    # caption come from k-means with random seeds, so captions are not compared).
    for table, column in (("transcript", "text"), ("frame_analyses", "ocr_text")):
        assert list(again[table].frame()[column]) == list(chain.frame(table)[column])
    assert len(again["embeddings"].rows) == len(chain.results["embeddings"].rows) > 0


def test_peak_rss_sees_a_native_allocation_and_trimming_returns_it() -> None:
    """The measurement reads the kernel, so memory tracemalloc cannot see (numpy's buffer here,
    native libraries' in the stages) counts."""
    import numpy as np

    before = memory.status_mb("VmRSS")
    assert before is not None
    with memory.PeakRss() as peak:
        block = np.ones(200 * 2**20, dtype=np.uint8)  # touched: resident
        time.sleep(5 * memory.SAMPLE_SECONDS)  # a stage's buffers live longer than one sample
        del block
    assert peak.peak_mb is not None and peak.peak_mb >= before + 150
    memory.release_free_memory()
    after = memory.status_mb("VmRSS")
    assert after is not None and after < before + 50


def test_embeddings_skip_without_loading_a_model(chain: Chain) -> None:
    disabled = OPTIONS.model_copy(update=dict(enable_embeddings=False))
    transcript, scenes, analyses = (
        chain.frame("transcript"),
        chain.frame("scenes"),
        chain.frame("frame_analyses"),
    )
    off = steps.embed_video(transcript, scenes, analyses, _never("embedder"), disabled)
    empty = steps.embed_video(
        transcript.iloc[0:0], scenes.iloc[0:0], analyses.iloc[0:0], _never("embedder"), OPTIONS
    )
    assert (off.skipped, empty.skipped) == ("embeddings disabled", "nothing to embed")


def test_inline_thumbnails_fit_the_ui_limit_even_for_busy_pictures(tmp_path: Path) -> None:
    noisy = tmp_path / "noise.jpg"
    subprocess.run(
        [
            media.ffmpeg_executable(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "mandelbrot=s=1280x720",
            "-vf",
            "noise=alls=60:allf=t",
            "-frames:v",
            "1",
            "-q:v",
            "2",
            str(noisy),
        ],
        check=True,
    )
    text = inline_thumbnail(noisy.read_bytes(), "scene 7 at 01:02.0")
    assert text == "" or (len(text) < INLINE_MARKDOWN_LIMIT and "data:image/webp;base64," in text)
    assert inline_thumbnail(b"not a jpeg", "x") == ""
    assert inline_thumbnail(noisy.read_bytes(), "x", limit=50) == ""


# --- the assets: orchestration around the stages ---


#: Given to every direct asset call: a context that makes its own instance enters it as the
#: process's current one and never leaves, which breaks later tests' definitions loading.
_INSTANCE = dg.DagsterInstance.ephemeral()


def _context(resources: dict[str, Any], video_id: str = VIDEO_ID) -> dg.AssetExecutionContext:
    return dg.build_asset_context(partition_key=video_id, resources=resources, instance=_INSTANCE)


def _invoke(
    asset: dg.AssetsDefinition, context: dg.AssetExecutionContext, **upstream: pd.DataFrame
) -> dg.Output:
    """Call the asset's function as Dagster would, with its upstream tables."""
    output = asset(context, **upstream)
    assert isinstance(output, dg.Output)
    return output


def test_ingest_assets_store_tables_and_metadata(
    settings: Settings, instance: dg.DagsterInstance, silent_video: media.SampleVideo
) -> None:
    video_id = "steps-ingest"
    resources = build_resources(settings)
    instance.add_dynamic_partitions(videos_partitions.name or "videos", [video_id])
    result = dg.materialize(
        [ingest.source_video],
        partition_key=video_id,
        instance=instance,
        resources=resources,
        tags={SOURCE_URI_TAG: str(silent_video.path)},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("source_video")[0].metadata
    assert isinstance(metadata["source_uri"], dg.PathMetadataValue)
    assert metadata["resolution"] == dg.MetadataValue.text("640x360")
    database = resources["database"].get()
    source = read_partition(database, TABLES["source_video"], video_id)
    assert list(source["source_uri"]) == [str(silent_video.path)]
    # A source named by the run's tag is remembered: a later backfill of the partition finds it.
    assert lookup_source(database, video_id) == str(silent_video.path)

    context = _context({"pipeline_config": PipelineConfig(), "blob_store": resources["blob_store"]}, video_id)
    output = _invoke(ingest.normalized_video, context, source_video=source)
    assert list(output.value.columns) == list(TABLES["normalized_video"].data_column_names)
    assert output.metadata["has_audio"] == dg.MetadataValue.bool(False)
    assert isinstance(output.metadata["normalize_seconds"], dg.FloatMetadataValue)
    with pytest.raises(dg.Failure) as failed:
        _invoke(ingest.normalized_video, context, source_video=source.iloc[0:0])
    assert not failed.value.allow_retries
    assert failed.value.description == (
        f"normalized_video failed for video {video_id!r}: "
        f"source_video has 0 rows for video {video_id!r}; materialize it again first"
    )


def test_analysis_assets_attach_thumbnails(chain: Chain) -> None:
    resources = {"pipeline_config": PipelineConfig(), "blob_store": BlobStoreResource(root=str(chain.root))}
    output = _invoke(
        analysis.keyframes,
        _context(resources),
        scenes=chain.frame("scenes"),
        normalized_video=chain.frame("normalized_video"),
    )
    assert output.value.to_dict("records") == chain.frame("keyframes").to_dict("records")
    metadata = output.metadata
    assert isinstance(metadata["thumbnails"], dg.MarkdownMetadataValue)
    assert isinstance(metadata["thumbnail_1"], dg.MarkdownMetadataValue)
    assert len(metadata["thumbnail_1"].value) < INLINE_MARKDOWN_LIMIT
    assert metadata["selected_scenes"] == dg.MetadataValue.json([0, 1, 2, 3, 4])
    assert metadata["keyframes"] == dg.MetadataValue.int(5)


def test_index_asset_embeds_with_the_configured_provider(chain: Chain, settings: Settings) -> None:
    resources = {"pipeline_config": PipelineConfig(), "ai": AIResource.from_settings(settings)}
    output = _invoke(
        index.embeddings,
        _context(resources),
        transcript=chain.frame("transcript"),
        scenes=chain.frame("scenes"),
        frame_analyses=chain.frame("frame_analyses"),
    )
    assert len(output.value) == len(chain.results["embeddings"].rows)
    assert output.metadata["dimension"] == dg.MetadataValue.int(384)
    assert output.metadata["api_requests"] == dg.MetadataValue.int(1)
    off = _invoke(
        index.embeddings,
        _context(
            {
                "pipeline_config": PipelineConfig(enable_embeddings=False),
                "ai": AIResource.from_settings(settings),
            }
        ),
        transcript=chain.frame("transcript"),
        scenes=chain.frame("scenes"),
        frame_analyses=chain.frame("frame_analyses"),
    )
    assert off.value.empty and off.metadata["skipped"] == dg.MetadataValue.text("embeddings disabled")


def test_errors_map_onto_failures_in_one_place() -> None:
    transient = S3StorageError("throttled", permanent=False)
    with pytest.raises(S3StorageError) as raised, common.reported_as_failure("keyframes", "v"):
        raise transient
    assert raised.value is transient, "left to the retry policy untouched"
    with pytest.raises(dg.Failure) as failed, common.reported_as_failure("keyframes", "v"):
        raise S3StorageError("no such bucket", permanent=True)
    assert not failed.value.allow_retries
    assert failed.value.description == "keyframes failed for video 'v': no such bucket"
    assert failed.value.metadata["error_type"] == dg.MetadataValue.text("S3StorageError")
    with pytest.raises(KeyError), common.reported_as_failure("keyframes", "v"):
        raise KeyError("a bug is not a stage error")


def test_facts_become_the_matching_metadata() -> None:
    facts: dict[str, steps.Fact] = {
        "md": steps.Markdown("**x**"),
        "where": steps.Location("s3://bucket/key"),
        "flag": True,
        "count": 3,
        "seconds": 1.5,
        "text": "hello",
        "nothing": None,
        "list": [1, 2],
    }
    metadata = common.metadata_of(facts)
    assert list(metadata) == list(facts)
    assert metadata["md"] == dg.MetadataValue.md("**x**")
    assert metadata["where"] == dg.MetadataValue.path("s3://bucket/key")
    assert metadata["flag"] == dg.MetadataValue.bool(True)
    assert metadata["count"] == dg.MetadataValue.int(3)
    assert metadata["seconds"] == dg.MetadataValue.float(1.5)
    assert metadata["text"] == dg.MetadataValue.text("hello")
    assert metadata["nothing"] == dg.MetadataValue.null()
    assert metadata["list"] == dg.MetadataValue.json([1, 2])


def test_retry_policy_comes_from_the_environment_at_import() -> None:
    code = (
        "from videoqa_pipeline.defs.assets import video_assets; "
        "print(sorted({a.op.retry_policy.max_retries for a in video_assets()}))"
    )
    env = {**os.environ, "WORKER_MAX_ATTEMPTS": "5"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[4]"


def _has_definitions_function(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Attribute) and decorator.attr == "definitions":
                    return True
    return False


def test_asset_modules_leave_the_assets_to_the_defs_loader() -> None:
    """A module with a ``@dg.definitions`` function has its module-level assets ignored by the loader."""
    folder = PACKAGE / "defs" / "assets"
    offenders = [
        path.name for path in folder.glob("*.py") if _has_definitions_function(ast.parse(path.read_text()))
    ]
    assert offenders == []


def test_stage_and_asset_functions_stay_short() -> None:
    long = []
    for folder in (PACKAGE / "steps", PACKAGE / "defs" / "assets"):
        for path in folder.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
                    if (node.end_lineno or start) - start + 1 > 80:
                        long.append(f"{path.name}:{node.name}")
    assert long == []

"""The whole pipeline on real media, real embedded PostgreSQL and the offline models."""

from __future__ import annotations

import re

import dagster as dg
import pytest

from videoqa_pipeline import media
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.runner import ProcessReport, process_video
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import read_partition

ASSETS = tuple(TABLES)  # one table per asset


def _database(settings: Settings) -> DatabaseResource:
    return DatabaseResource(database_url=settings.database_url, home=str(settings.home))


def _rows(settings: Settings, video_id: str) -> dict[str, int]:
    database = _database(settings).get()
    return {name: len(read_partition(database, TABLES[name], video_id)) for name in ASSETS}


def _retries(instance: dg.DagsterInstance, run_id: str) -> int:
    return sum(
        1
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None
        and entry.dagster_event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    )


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture(scope="module")
def processed_talk(settings: Settings, talk_video: media.SampleVideo) -> ProcessReport:
    report = process_video(str(talk_video.path), settings=settings, video_id="talk")
    assert report.success, report.error
    return report


def test_all_assets_materialize_with_expected_rows(
    settings: Settings, processed_talk: ProcessReport, talk_video
) -> None:
    assert sorted(step.name for step in processed_talk.steps) == sorted(ASSETS)
    rows = _rows(settings, "talk")
    assert rows["source_video"] == 1 and rows["normalized_video"] == 1
    database = _database(settings).get()
    scenes = read_partition(database, TABLES["scenes"], "talk")
    assert len(scenes) == len(talk_video.cut_times) + 1
    assert rows["keyframes"] == min(len(scenes), settings.max_frames_per_video)
    assert rows["frame_analyses"] == rows["keyframes"]

    transcript = read_partition(database, TABLES["transcript"], "talk")
    heard = _words(" ".join(transcript["text"]))
    assert {"museum", "steps", "visitors", "postcards"} <= heard, heard
    assert transcript["start_seconds"].is_monotonic_increasing

    embeddings = read_partition(database, TABLES["embeddings"], "talk")
    assert set(embeddings["kind"]) == {"transcript", "frame"}
    assert set(embeddings["dimension"]) == {384}
    assert all(len(vector) == 384 for vector in embeddings["embedding"])


def test_materializations_carry_metadata_for_the_ui(processed_talk: ProcessReport) -> None:
    keyframes = processed_talk.metadata_of("keyframes")
    assert "data:image/jpeg;base64," in str(keyframes["thumbnails"])
    transcript = processed_talk.metadata_of("transcript")
    assert transcript["segments"] > 0 and "museum" in str(transcript["preview"]).lower()
    assert processed_talk.metadata_of("scenes")["scenes"] == 5
    for step in ASSETS:
        metadata = processed_talk.metadata_of(step)
        assert metadata.get("dagster/row_count") is not None, step
        assert "dagster/column_schema" in metadata, step


def test_rematerializing_replaces_rows_and_config_overrides_apply(
    settings: Settings, processed_talk: ProcessReport, talk_video: media.SampleVideo
) -> None:
    before = _rows(settings, "talk")
    again = process_video(str(talk_video.path), settings=settings, video_id="talk")
    assert again.success, again.error
    assert _rows(settings, "talk") == before

    fewer = process_video(
        str(talk_video.path), settings=settings, video_id="talk", config_overrides={"max_frames_per_video": 3}
    )
    assert fewer.success, fewer.error
    database = _database(settings).get()
    keyframes = read_partition(database, TABLES["keyframes"], "talk")
    assert list(keyframes["scene_index"]) == [0, 2, 4]  # first, middle, last of five scenes
    assert _rows(settings, "talk")["frame_analyses"] == 3


def test_normalize_preset_and_height_come_from_run_config(
    settings: Settings, talk_video: media.SampleVideo
) -> None:
    # 144p forces a re-encode, so the preset is used.
    report = process_video(
        str(talk_video.path),
        settings=settings,
        video_id="talk-ultrafast",
        config_overrides={"normalize_preset": "ultrafast", "normalize_height": 144},
    )
    assert report.success, report.error
    metadata = report.metadata_of("normalized_video")
    assert metadata["video_encoding"] == "re-encoded (H.264, x264 preset ultrafast)"
    assert metadata["resolution"].endswith("x144")


def test_video_without_audio_succeeds_with_empty_transcript(settings: Settings, silent_video) -> None:
    report = process_video(str(silent_video.path), settings=settings, video_id="silent")
    assert report.success, report.error
    rows = _rows(settings, "silent")
    assert rows["transcript"] == 0
    assert report.metadata_of("transcript")["skipped"] == "video has no audio"
    assert rows["scenes"] == 2 and rows["keyframes"] == 2


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("zero", r"empty"),
        ("text", r"not a (media|video)"),
        ("corrupt", r"not a (media|video)"),
        ("truncated", r"truncat"),
        ("audio_only", r"no video stream"),
    ],
)
def test_bad_input_fails_fast_with_a_readable_message(
    settings: Settings, instance: dg.DagsterInstance, bad_inputs, case: str, expected: str
) -> None:
    report = process_video(
        str(bad_inputs[case]), settings=settings, video_id=f"bad-{case}", instance=instance
    )
    assert not report.success
    assert report.error is not None
    assert re.search(expected, report.error, re.IGNORECASE), report.error
    assert f"bad-{case}" in report.error and "source_video" in report.error
    assert "Traceback" not in report.error
    assert _retries(instance, report.run_id) == 0
    assert _rows(settings, f"bad-{case}")["source_video"] == 0


def test_missing_file_fails_fast(settings: Settings, instance: dg.DagsterInstance, tmp_path) -> None:
    report = process_video(
        str(tmp_path / "nowhere.mp4"), settings=settings, video_id="missing", instance=instance
    )
    assert not report.success
    assert report.error is not None and "not found" in report.error.lower()
    assert _retries(instance, report.run_id) == 0


def test_out_of_range_config_fails_before_any_work(
    settings: Settings, instance: dg.DagsterInstance, silent_video
) -> None:
    report = process_video(
        str(silent_video.path),
        settings=settings,
        video_id="zero-frames",
        config_overrides={"max_frames_per_video": 0},
        instance=instance,
    )
    assert not report.success
    assert report.error is not None and "max_frames_per_video" in report.error
    assert not any(step.metadata for step in report.steps), "no asset may be materialized"
    assert _rows(settings, "zero-frames")["source_video"] == 0

"""Sources that decode only in part: processed as far as they decode, on their own timeline, and
saying how much decoded, in the stage's metadata and on the job row.

* Audio packets that do not decode in the middle of a stream (overwritten bytes in an MP4, or
  packets missing from an MKV) used to shorten the WAV (45 of 60 s) and pull every later
  transcript time earlier (the beep at 51.0 s sat at 35.9 s), while the job said succeeded.
* A video whose audio does not decode at all failed the whole job.
* A video stream that stops decoding (at frame 601 of 1,500) gave scenes up to the end of the
  file, with nothing but a line on stderr to say so.

The media are built here with ffmpeg and byte patches (:mod:`.damaged_media`).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from click.testing import CliRunner

from videoqa_pipeline import media, steps
from videoqa_pipeline.cli import main
from videoqa_pipeline.steps import ProcessingOptions
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.blobs import LocalBlobStore
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import read_partition
from videoqa_pipeline_tests.reliability import damaged_media
from videoqa_pipeline_tests.reliability.job_harness import JobHarness


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("damaged")
    clean = damaged_media.clean_video(folder / "clean.mp4")
    cases = {"clean": clean}
    for name, kind, start, end in (
        ("audio_gap", "audio", 12.0, 27.0),
        ("audio_dead", "audio", 0.0, math.inf),
        ("video_gap", "video", 24.0, 30.0),
        ("video_tail", "video", 24.0, math.inf),
    ):
        cases[name] = folder / f"{name}.mp4"
        assert damaged_media.overwrite_packets(clean, cases[name], kind, start, end) > 0
    cases["audio_gap_mkv"] = folder / "audio_gap.mkv"
    assert damaged_media.mkv_without_audio(clean, cases["audio_gap_mkv"], 12.0, 27.0) > 0
    return cases


def _stage(source: Path, store: LocalBlobStore, video_id: str) -> tuple[pd.DataFrame, steps.StageResult]:
    """``source_video`` and ``normalized_video`` of ``source``, as the pipeline runs them."""
    original = steps.ingest_source(str(source), video_id, store).frame()
    return original, steps.normalize_video(original, video_id, store, ProcessingOptions())


@pytest.mark.parametrize("case", ["audio_gap", "audio_gap_mkv"])
def test_undecodable_audio_keeps_the_timeline_and_says_how_much_decoded(
    damaged: dict[str, Path], tmp_path: Path, case: str
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    _, normalized = _stage(damaged[case], store, case)

    with store.local_path(str(normalized.rows[0]["audio_blob_key"])) as wav:
        samples, rate = damaged_media.wav_samples(wav)
        onsets = damaged_media.beep_onsets(wav)
    assert len(samples) / rate == pytest.approx(60.0, abs=0.05), "the WAV is as long as the video"
    # The beep at 21 s fell in the damaged stretch; every later one is where the source has it.
    assert onsets == [1.0, 11.0, 31.0, 41.0, 51.0]

    facts = normalized.facts
    assert facts["audio_decoded_seconds"] == pytest.approx(45.0, abs=0.1)
    assert facts["audio_decodable_fraction"] == pytest.approx(0.75, abs=0.01)
    assert normalized.warning is not None
    assert normalized.warning.startswith(
        "audio undecodable from 12.0 s to 27.0 s: transcript covers 45.0 of 60.0 s"
    )


def test_a_clean_source_has_no_warning(damaged: dict[str, Path], tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    _, normalized = _stage(damaged["clean"], store, "clean")
    assert normalized.warning is None and "audio_decoded_seconds" not in normalized.facts
    scenes = steps.detect_video_scenes(normalized.frame(), "clean", store, ProcessingOptions())
    assert scenes.warning is None
    assert scenes.facts["decoded_seconds"] == 60.0 and scenes.facts["decodable_fraction"] == 1.0


def test_undecodable_audio_gives_a_video_only_result(damaged: dict[str, Path], tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    _, normalized = _stage(damaged["audio_dead"], store, "dead")

    assert normalized.rows[0]["audio_blob_key"] is None
    assert normalized.facts["has_audio"] is False and normalized.facts["audio_decoded_seconds"] == 0.0
    assert normalized.warning is not None and normalized.warning.startswith("audio undecodable")
    transcript = steps.transcribe_audio(
        normalized.frame(),
        "dead",
        store,
        lambda: pytest.fail("no model is needed without audio"),
        ProcessingOptions(),
        audio_problem=normalized.warning,
    )
    assert transcript.rows == [] and transcript.skipped == normalized.warning
    scenes = steps.detect_video_scenes(normalized.frame(), "dead", store, ProcessingOptions())
    assert scenes.warning is None and len(scenes.rows) == 1


def test_an_undecodable_video_stretch_is_skipped_and_reported(
    damaged: dict[str, Path], tmp_path: Path
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    _, normalized = _stage(damaged["video_gap"], store, "gap")
    scenes = steps.detect_video_scenes(normalized.frame(), "gap", store, ProcessingOptions())

    assert scenes.facts["decoded_seconds"] == pytest.approx(54.0, abs=0.1)
    assert scenes.facts["decodable_fraction"] == pytest.approx(0.9, abs=0.01)
    assert scenes.warning == "video undecodable from 24.0 s to 30.0 s: scenes cover 54.0 of 60.0 s"
    assert scenes.rows[-1]["end_seconds"] == pytest.approx(60.0), "decoding went on after the damage"


def test_scenes_end_where_the_video_stops_decoding(damaged: dict[str, Path], tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    _, normalized = _stage(damaged["video_tail"], store, "tail")
    scenes = steps.detect_video_scenes(normalized.frame(), "tail", store, ProcessingOptions())

    # Frame 601 of 1,500 is the first that does not decode.
    assert scenes.rows[-1]["end_seconds"] == pytest.approx(24.0, abs=0.05)
    assert scenes.facts["decoded_seconds"] == pytest.approx(24.0, abs=0.05)
    assert scenes.warning == "video undecodable from 24.0 s: scenes cover 24.0 of 60.0 s"
    keyframes = steps.extract_video_keyframes(
        pd.DataFrame(scenes.rows), normalized.frame(), "tail", store, ProcessingOptions()
    )
    assert keyframes.rows and all(row["timestamp_seconds"] < 24.0 for row in keyframes.rows)


def test_keyframes_after_an_undecodable_stretch_are_their_own_frames(damaged: dict[str, Path]) -> None:
    frames = media.extract_keyframes(damaged["video_gap"], [10.0, 45.0], seek_threshold_seconds=math.inf)
    assert [frame.timestamp for frame in frames] == pytest.approx([10.0, 45.0], abs=0.25)


def test_jobs_on_damaged_sources_succeed_with_warnings(
    harness: JobHarness, damaged: dict[str, Path], tmp_path: Path
) -> None:
    expected = {
        "audio_gap": [
            "normalized_video: audio undecodable from 12.0 s to 27.0 s: transcript covers 45.0 of 60.0 s"
        ],
        "audio_dead": ["normalized_video: audio undecodable"],
        "video_tail": ["scenes: video undecodable from 24.0 s: scenes cover 24.0 of 60.0 s"],
    }
    sources: dict[str, Path] = {}
    job_ids: dict[str, int] = {}
    for case, lines in expected.items():
        source = sources[case] = tmp_path / f"damaged-{case}.mp4"
        shutil.copy(damaged[case], source)
        # Transcription on for the job without decodable audio: it needs no model, and says why.
        options = {"enable_transcription": True} if case == "audio_dead" else {}
        job_ids[case] = harness.submit(str(source), options=options)
        outcome = harness.run_job(job_ids[case])
        job = outcome.job
        assert job.status == "succeeded" and job.attempts == 1, job.error
        assert job.warnings is not None
        assert [
            line[: len(prefix)] for line, prefix in zip(job.warnings.splitlines(), lines, strict=True)
        ] == lines
        assert job.video_id is not None
        rows = harness.rows(job.video_id)
        assert rows["source_video"] == rows["normalized_video"] == 1 and rows["scenes"] >= 1, rows
        metadata = {
            step: _latest_metadata(harness.instance, step, job.video_id)
            for step in ("normalized_video", "scenes", "transcript")
        }
        if case == "audio_gap":
            assert metadata["normalized_video"]["audio_decodable_fraction"] == pytest.approx(0.75, abs=0.01)
        if case == "audio_dead":
            assert str(metadata["transcript"]["skipped"]).startswith("audio undecodable")
            assert read_partition(harness.database, TABLES["transcript"], job.video_id).empty
        if case == "video_tail":
            assert metadata["scenes"]["decodable_fraction"] == pytest.approx(0.4, abs=0.01)

    shown = CliRunner().invoke(
        main,
        ["status", str(job_ids["video_tail"])],
        env={**harness.env, "DAGSTER_HOME": ""},
        catch_exceptions=False,
    )
    assert shown.exit_code == 0, shown.output
    assert "status                 succeeded" in shown.output
    assert "warning                scenes: video undecodable from 24.0 s" in shown.output

    # The file was mended and the job requeued: its new attempt starts without the old warnings.
    shutil.copy(damaged["clean"], sources["audio_gap"])
    ledger.requeue_job(harness.database, job_ids["audio_gap"], force=True)
    again = harness.run_job(job_ids["audio_gap"]).job
    assert again.status == "succeeded" and again.attempts == 2 and again.warnings is None


def test_a_warning_is_recorded_once_per_step_and_attempt(
    harness: JobHarness, damaged: dict[str, Path]
) -> None:
    job_id = harness.submit(str(damaged["clean"]))
    [request] = harness.tick()
    job = ledger.get_job(harness.database, job_id)
    for _ in range(2):  # a retried step reports the same warning again
        assert ledger.add_job_warning(
            harness.database, job_id, job.attempts, "run-a", "scenes", "video  undecodable"
        )
    assert ledger.add_job_warning(
        harness.database, job_id, job.attempts, "run-a", "normalized_video", "audio"
    )
    assert not ledger.add_job_warning(
        harness.database, job_id, job.attempts + 1, "run-b", "scenes", "other attempt"
    )
    assert (
        ledger.get_job(harness.database, job_id).warnings
        == "scenes: video undecodable\nnormalized_video: audio"
    )
    harness.execute(request)
    assert ledger.get_job(harness.database, job_id).status == "succeeded"


@pytest.mark.reliability
def test_transcript_times_after_damaged_audio_are_source_times(harness: JobHarness, tmp_path: Path) -> None:
    """The offline speech model on a source whose audio does not decode from 12 to 27 s: the
    sentence spoken at 51 s is transcribed at 51 s (it was at 36 s before the WAV kept the
    source's timeline)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: no speech to transcribe (apt-get install espeak-ng)")
    speech = damaged_media.speech_track(
        tmp_path / "speech.wav",
        {5.0: "The morning train leaves the station early.", 51.0: "The zebra crossed the quiet road."},
    )
    clean = damaged_media.clean_video(tmp_path / "spoken.mp4", speech_wav=speech)
    source = tmp_path / "spoken-damaged.mp4"
    damaged_media.overwrite_packets(clean, source, "audio", 12.0, 27.0)

    outcome = harness.run_job(harness.submit(str(source), options={"enable_transcription": True}))
    job = outcome.job
    assert job.status == "succeeded", job.error
    assert job.warnings is not None and "transcript covers 45.0 of 60.0 s" in job.warnings
    assert job.video_id is not None
    transcript = read_partition(harness.database, TABLES["transcript"], job.video_id)
    starts = {
        word: [float(row.start_seconds) for row in transcript.itertuples() if word in str(row.text).lower()]
        for word in ("train", "road")
    }
    assert starts["train"] and starts["train"][0] == pytest.approx(5.0, abs=1.0), transcript
    assert starts["road"] and starts["road"][0] == pytest.approx(51.0, abs=1.0), transcript


def _latest_metadata(instance: dg.DagsterInstance, asset: str, partition: str) -> dict[str, object]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    assert records, f"{asset} was not materialized for {partition}"
    materialization = records[0].asset_materialization
    assert materialization is not None
    return {name: getattr(value, "value", value) for name, value in materialization.metadata.items()}

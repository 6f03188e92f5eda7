"""Bad and odd inputs, each as a job: ledger row → job sensor → Dagster run → final state.

Unreadable input must end ``failed`` after exactly one attempt of one step (no retry inside the
run, no second run), with an error naming the video, the step and the problem, and nothing left
in any table or in the blob store. Odd but valid input (no audio, half a second, one frame, VFR
phone video with rotation, 10-bit HEVC, MKV/WebM/MOV, 4K, names with spaces and non-ASCII
letters) must end ``succeeded`` with consistent rows. Transient trouble (a URL that times out, a
file that changes while it is read) is retried within ``WORKER_MAX_ATTEMPTS``.

The media-level checks of these files (probe messages, normalization details) live in
``videoqa_pipeline_tests/media``; here they are proven through the path a user sees.
"""

# ruff: noqa: F811 - fixtures imported from other test packages are redefined as parameters

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from videoqa_pipeline import aws, media
from videoqa_pipeline.fetch import file_sha256
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import read_partition
from videoqa_pipeline_tests.media.conftest import (  # noqa: F401 - fixtures and helpers
    bad_inputs,
    lavfi_video,
    media_dir,
    rotated_video,
    variants,
)
from videoqa_pipeline_tests.reliability.job_harness import JobHarness, JobOutcome

X264 = ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
UNICODE_NAME = "Café del Mar – ünïcode 日本 clip.mp4"  # noqa: RUF001 - the dash is part of the case
SLOW_SECONDS = 4.0  # the harness's fetch timeout is 1 s


@pytest.fixture(scope="module")
def harness_overrides() -> dict[str, str]:
    # The HTTP sources of this module are served on loopback.
    return {"VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES": "true"}


@pytest.fixture(scope="module")
def odd_inputs(media_dir: Path, variants: dict[str, Path]) -> dict[str, Path]:
    """The media tests' valid variants plus a VFR phone video with rotation and a Unicode name."""
    cases = dict(variants)
    phone_dir = media_dir / "phone"
    phone_dir.mkdir(exist_ok=True)
    cases["vfr_rotated"] = rotated_video(phone_dir, variants["vfr"])
    unicode_dir = media_dir / "dir with spaces ü"
    unicode_dir.mkdir(exist_ok=True)
    cases["unicode_name"] = shutil.copy(variants["no_audio"], unicode_dir / UNICODE_NAME)
    return cases


@pytest.fixture(scope="module")
def broken_inputs(media_dir: Path, bad_inputs: dict[str, Path]) -> dict[str, Path]:
    """The media tests' bad files plus an HTML page saved as .mp4 (an error page a download returned)."""
    html = media_dir / "download.mp4"
    html.write_text(
        "<!DOCTYPE html><html><head><title>404</title></head><body>Not Found</body></html>\n" * 20
    )
    return {**bad_inputs, "html": html}


class _MediaHandler(http.server.SimpleHTTPRequestHandler):
    """Files of the served directory; ``/slow/...`` answers only after :data:`SLOW_SECONDS`."""

    def do_GET(self) -> None:
        if self.path.startswith("/slow/"):
            time.sleep(SLOW_SECONDS)
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def media_server(media_dir: Path) -> Iterator[str]:
    """A loopback HTTP server over the media directory; yields its base URL."""
    handler = lambda *args: _MediaHandler(*args, directory=str(media_dir))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _assert_failed_once(outcome: JobOutcome, harness: JobHarness, *, step: str, pattern: str) -> None:
    """Failed for good at the first try of ``step``, readable error, nothing left behind."""
    job = outcome.job
    assert job.status == "failed", job
    assert job.failed_step == step and job.transient is False, job
    assert job.attempts == 1 and len(outcome.runs) == 1, "bad input gets one run"
    assert outcome.step_retries == [0], "bad input is never retried inside the run"
    error = job.error or ""
    assert pattern.lower() in error.lower(), error
    assert job.video_id and job.video_id in error and step in error, error
    assert "Traceback" not in error and len(error) < 1000, error
    assert set(harness.rows(job.video_id).values()) == {0}, "no rows in any table"
    assert harness.blob_keys(job.video_id) == [], "no blobs"


@pytest.mark.parametrize(
    ("case", "pattern"),
    [
        ("empty", "empty"),
        ("truncated", "truncated"),
        ("text", "not a video"),
        ("html", "not a video"),
        ("png", "still image"),
        ("jpeg_named_mp4", "still image"),
        ("audio_only", "no video stream"),
        ("random", "not a"),
    ],
)
def test_unreadable_files_fail_once_with_the_reason(
    harness: JobHarness, broken_inputs: dict[str, Path], case: str, pattern: str
) -> None:
    job_id = harness.submit(str(broken_inputs[case]), video_id=f"bad-{case.replace('_', '-')}")
    _assert_failed_once(harness.run_job(job_id), harness, step="source_video", pattern=pattern)


def test_a_file_deleted_before_its_run_fails_at_intake(harness: JobHarness, media_dir: Path) -> None:
    gone = media_dir / "deleted-after-submit.mp4"
    lavfi_video(gone, *X264, audio=False)
    job_id = harness.submit(str(gone))
    gone.unlink()
    outcome = harness.run_job(job_id)
    assert (outcome.job.status, outcome.job.failed_step, outcome.runs) == ("failed", "intake", [])
    assert "not found" in (outcome.job.error or "")


@pytest.mark.parametrize(
    "case",
    [
        "no_audio",
        "half_second",
        "one_frame",
        "vfr_rotated",
        "hevc10",
        "mkv",
        "vp9",
        "mov",
        "uhd",
        "unicode_name",
    ],
)
def test_odd_but_valid_videos_succeed(harness: JobHarness, odd_inputs: dict[str, Path], case: str) -> None:
    if case not in odd_inputs:
        pytest.skip(f"this ffmpeg cannot encode the {case} case (encoder missing)")
    source = odd_inputs[case]
    job_id = harness.submit(str(source))
    outcome = harness.run_job(job_id)
    job = outcome.job
    assert job.status == "succeeded", job.error
    assert job.attempts == 1 and outcome.step_retries == [0]
    assert job.video_id is not None
    rows = harness.rows(job.video_id)
    assert rows["source_video"] == rows["normalized_video"] == 1, rows
    assert rows["scenes"] >= 1 and 1 <= rows["keyframes"] <= rows["scenes"], rows
    video = read_partition(harness.database, TABLES["source_video"], job.video_id).iloc[0]
    assert video["source_uri"] == str(source) and video["sha256"] == file_sha256(source)
    normalized = read_partition(harness.database, TABLES["normalized_video"], job.video_id).iloc[0]
    assert normalized["height"] <= 720 and normalized["height"] <= max(video["height"], video["width"])
    if case == "vfr_rotated":
        assert video["vfr"] and int(video["rotation"]) % 180 == 90
        assert normalized["height"] > normalized["width"], "rotation applied: the phone video is portrait"
    if case == "uhd":
        assert (video["width"], video["height"]) == (3840, 2160)
        assert (normalized["width"], normalized["height"]) == (1280, 720)
    assert bool(normalized["audio_blob_key"]) == bool(video["has_audio"])


def test_non_ascii_names_work_as_file_uris_and_urls(
    harness: JobHarness,
    odd_inputs: dict[str, Path],
    media_dir: Path,
    media_server: str,
) -> None:
    source = odd_inputs["unicode_name"]
    relative = source.relative_to(media_dir).as_posix()
    for uri in (source.as_uri(), f"{media_server}/{quote(relative)}"):
        outcome = harness.run_job(harness.submit(uri))
        assert outcome.job.status == "succeeded", (uri, outcome.job.error)
        assert outcome.job.video_id and outcome.job.video_id.startswith("caf-del-mar"), outcome.job.video_id
        video = read_partition(harness.database, TABLES["source_video"], outcome.job.video_id).iloc[0]
        assert video["source_uri"] == uri and video["sha256"] == file_sha256(source)


def test_a_url_that_404s_fails_once(harness: JobHarness, media_server: str) -> None:
    outcome = harness.run_job(harness.submit(f"{media_server}/no/such/video.mp4", video_id="http-404"))
    _assert_failed_once(outcome, harness, step="source_video", pattern="HTTP 404")


def test_a_url_that_times_out_is_retried_up_to_the_bound_then_fails(
    harness: JobHarness,
    media_server: str,
    odd_inputs: dict[str, Path],
    media_dir: Path,
) -> None:
    relative = odd_inputs["no_audio"].relative_to(media_dir).as_posix()
    outcome = harness.run_job(harness.submit(f"{media_server}/slow/{relative}", video_id="http-slow"))
    job = outcome.job
    max_attempts = harness.settings.worker_max_attempts
    assert (job.status, job.failed_step, job.transient) == ("failed", "source_video", True), job
    assert job.attempts == max_attempts and len(outcome.runs) == max_attempts, "one run per job attempt"
    assert outcome.step_retries == [max_attempts - 1] * max_attempts, "retried inside each run"
    assert "timed out" in (job.error or "") and f"/slow/{relative}" in (job.error or ""), job.error
    assert (job.error or "").startswith("source_video failed for video 'http-slow' after its retries"), (
        job.error
    )
    assert set(harness.rows("http-slow").values()) == {0}


@pytest.fixture(scope="module")
def uploads_bucket(moto_endpoint: str) -> str:
    s3 = aws.client("s3", aws.AwsConfig(region="us-east-1", endpoint_url=moto_endpoint))
    s3.create_bucket(Bucket="uploads")
    return "uploads"


def test_a_missing_s3_key_fails_once(harness: JobHarness, uploads_bucket: str) -> None:
    outcome = harness.run_job(
        harness.submit(f"s3://{uploads_bucket}/talks/missing.mp4", video_id="s3-missing")
    )
    _assert_failed_once(outcome, harness, step="source_video", pattern="missing.mp4")
    assert "404" in (outcome.job.error or "") or "not found" in (outcome.job.error or "").lower()


def test_an_s3_key_with_spaces_and_non_ascii_letters_is_read(
    harness: JobHarness, uploads_bucket: str, moto_endpoint: str, odd_inputs: dict[str, Path]
) -> None:
    key = f"talks/{UNICODE_NAME}"
    s3 = aws.client("s3", aws.AwsConfig(region="us-east-1", endpoint_url=moto_endpoint))
    s3.upload_file(str(odd_inputs["unicode_name"]), uploads_bucket, key)
    outcome = harness.run_job(harness.submit(f"s3://{uploads_bucket}/{key}"))
    assert outcome.job.status == "succeeded", outcome.job.error
    assert outcome.job.video_id is not None
    video = read_partition(harness.database, TABLES["source_video"], outcome.job.video_id).iloc[0]
    assert video["sha256"] == file_sha256(odd_inputs["unicode_name"])


def test_a_source_replaced_while_it_is_read_is_read_again(
    harness: JobHarness,
    media_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file is swapped for a longer video between probe and copy: never rows of two versions."""
    first = lavfi_video(
        media_dir / "growing-v1.mp4", *X264, audio=False, source="testsrc2=s=160x120:r=25:d=1"
    )
    second = lavfi_video(
        media_dir / "growing-v2.mp4", *X264, audio=False, source="testsrc2=s=160x120:r=25:d=3"
    )
    live = media_dir / "growing.mp4"
    shutil.copy(first, live)
    real_probe = media.probe
    swapped: list[Path] = []

    def probe_then_swap(path: Path, *args: Any, **kwargs: Any) -> Any:
        info = real_probe(path, *args, **kwargs)
        if not swapped and Path(path) == live:
            shutil.copy(second, live.with_suffix(".tmp"))
            live.with_suffix(".tmp").replace(live)  # another process rewrites the file meanwhile
            swapped.append(live)
        return info

    monkeypatch.setattr(media, "probe", probe_then_swap)
    outcome = harness.run_job(harness.submit(str(live), video_id="changed-while-read"))
    assert swapped, "the swap happened"
    job = outcome.job
    assert job.status == "succeeded", job.error
    assert outcome.step_retries == [1], "the first read noticed the change and was retried"
    video = read_partition(harness.database, TABLES["source_video"], "changed-while-read").iloc[0]
    stored = harness.blob_store.get_bytes(str(video["blob_key"]))
    assert video["sha256"] == hashlib.sha256(stored).hexdigest() == file_sha256(second), (
        "hash of what is stored"
    )
    assert video["duration_seconds"] == pytest.approx(3.0, abs=0.2), "probe facts of the stored version"
    normalized = read_partition(harness.database, TABLES["normalized_video"], "changed-while-read").iloc[0]
    assert normalized["duration_seconds"] == pytest.approx(3.0, abs=0.2)


def test_a_source_changed_during_normalize_does_not_matter(
    harness: JobHarness,
    media_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Later stages read the stored original, never the source again."""
    live = media_dir / "rewritten.mp4"
    lavfi_video(live, *X264, audio=False, source="testsrc2=s=160x120:r=25:d=2")
    original_sha = file_sha256(live)
    real_normalize = media.normalize

    def truncate_then_normalize(*args: Any, **kwargs: Any) -> Any:
        live.write_bytes(b"")  # the producer truncates the file while the pipeline works
        return real_normalize(*args, **kwargs)

    monkeypatch.setattr(media, "normalize", truncate_then_normalize)
    outcome = harness.run_job(harness.submit(str(live), video_id="truncated-during-normalize"))
    assert outcome.job.status == "succeeded", outcome.job.error
    assert outcome.step_retries == [0]
    video = read_partition(harness.database, TABLES["source_video"], "truncated-during-normalize").iloc[0]
    normalized = read_partition(harness.database, TABLES["normalized_video"], "truncated-during-normalize")
    assert video["sha256"] == original_sha
    assert normalized.iloc[0]["duration_seconds"] == pytest.approx(video["duration_seconds"], abs=0.2)


def test_failed_jobs_are_final_and_counted(harness: JobHarness) -> None:
    """Every job this module ran ended in a final state: none is left pending, queued or running."""
    counts = ledger.count_by_status(harness.database)
    assert counts["pending"] == counts["queued"] == counts["running"] == 0, counts
    assert counts["failed"] > 0 and counts["succeeded"] > 0, counts

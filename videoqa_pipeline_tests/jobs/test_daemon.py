"""Jobs through the real daemon: ``dagster dev`` picks up inserted rows and writes the outcome back."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline import media
from videoqa_pipeline.storage.embedded import release_embedded_database
from videoqa_pipeline_tests.jobs.daemon import (
    insert_jobs,
    producer,
    runs_per_job,
    start_worker,
    wait_for_step_seconds,
    wait_for_table,
    wait_until_final,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def homes() -> Iterator[tuple[Path, Path]]:
    root = Path(tempfile.mkdtemp(prefix="videoqa-jobs-daemon-"))
    root.chmod(0o755)
    dagster_home, videoqa_home = root / "dagster", root / "videoqa"
    yield dagster_home, videoqa_home
    release_embedded_database(videoqa_home)
    shutil.rmtree(root, ignore_errors=True)


def test_inserted_jobs_run_once_and_a_bad_one_fails_readably(homes: tuple[Path, Path]) -> None:
    dagster_home, videoqa_home = homes
    clips = dagster_home.parent / "clips"
    clips.mkdir()
    sources = [
        str(media.make_sample_video(clips / f"clip-{n}.mp4", scene_seconds=(1.0, 1.0), audio=False).path)
        for n in range(3)
    ]
    notes = clips / "notes.mp4"
    notes.write_text("not a video at all\n" * 40)
    server = start_worker(dagster_home, videoqa_home, "dagster-dev.log")
    try:
        wait_for_table(videoqa_home)
        with producer(videoqa_home) as conn:
            good = insert_jobs(conn, sources)
            (bad,) = insert_jobs(conn, [str(notes)])
            final = wait_until_final(conn, [*good, bad], timeout=240, server=server)
            video_ids = [
                row[0]
                for row in conn.execute(
                    "SELECT video_id FROM videoqa_jobs WHERE id = ANY(%s) ORDER BY id", (good,)
                ).fetchall()
            ]
        assert [final[job_id][0] for job_id in good] == ["succeeded"] * 3, final
        # The run status sensor adds the seconds each step took (it may lag the run's own update).
        durations = wait_for_step_seconds(videoqa_home, good, timeout=60)
        assert all({"source_video", "embeddings"} <= set(steps) for steps in durations.values()), durations
        status, error, step = final[bad]
        assert status == "failed" and step == "source_video", final[bad]
        assert error is not None and "notes.mp4" in error and "not a video" in error
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            materialized = instance.get_materialized_partitions(dg.AssetKey("embeddings"))
            assert set(video_ids) <= materialized
            runs = runs_per_job(instance)
        assert {job_id: len(runs.get(job_id, [])) for job_id in [*good, bad]} == dict.fromkeys(
            [*good, bad], 1
        )
    finally:
        lingering = server.stop()
    assert not lingering


REPOSITORIES_QUERY = (
    "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }"
)
LAUNCH_RUN_MUTATION = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def _partitions(dagster_home: Path) -> list[str]:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return list(instance.get_dynamic_partitions("videos"))


def _wait_for_partitions(dagster_home: Path, count: int, timeout: float = 150.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        keys = _partitions(dagster_home)
        if len(keys) == count:
            return keys
        time.sleep(2.0)
    raise AssertionError(f"{_partitions(dagster_home)} after {timeout:.0f} s, expected {count} partitions")


@pytest.mark.timeout(600)
def test_the_working_set_retires_old_videos_and_reprocess_videos_brings_one_back() -> None:
    """VIDEOQA_PARTITION_WORKING_SET=1 through the real daemon: three videos processed, two retired
    by the working-set sensor (their runs gone, their rows and jobs kept), then one re-processed
    from the UI's reprocess_videos job, which brings its partition back."""
    root = Path(tempfile.mkdtemp(prefix="videoqa-working-set-"))
    root.chmod(0o755)
    dagster_home, videoqa_home = root / "dagster", root / "videoqa"
    clips = root / "clips"
    clips.mkdir()
    sources = [
        str(media.make_sample_video(clips / f"kept-{n}.mp4", scene_seconds=(1.0, 1.0), audio=False).path)
        for n in range(3)
    ]
    server = start_worker(dagster_home, videoqa_home, "dagster-dev.log", VIDEOQA_PARTITION_WORKING_SET="1")
    try:
        wait_for_table(videoqa_home)
        with producer(videoqa_home) as conn:
            jobs = []
            for source in sources:  # one at a time: the newest video is the one that stays
                jobs += insert_jobs(conn, [source])
                wait_until_final(conn, jobs[-1:], timeout=240, server=server)
            video_ids = [
                row[0]
                for row in conn.execute(
                    "SELECT video_id FROM videoqa_jobs WHERE id = ANY(%s) ORDER BY id", (jobs,)
                ).fetchall()
            ]
        assert _wait_for_partitions(dagster_home, 1) == [video_ids[-1]]
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            assert set(runs_per_job(instance)) == {jobs[-1]}  # the retired videos' runs are gone
        with producer(videoqa_home) as conn:
            kept = conn.execute(
                "SELECT count(DISTINCT video_id) FROM videoqa_keyframes WHERE video_id = ANY(%s)",
                (video_ids,),
            ).fetchone()
            assert kept == (3,)  # nothing of a retired video itself is deleted

        (repository,) = server.graphql(REPOSITORIES_QUERY)["repositoriesOrError"]["nodes"]
        launched = server.graphql(
            LAUNCH_RUN_MUTATION,
            {
                "executionParams": {
                    "selector": {
                        "repositoryLocationName": repository["location"]["name"],
                        "repositoryName": repository["name"],
                        "jobName": "reprocess_videos",
                    },
                    "runConfigData": {
                        "ops": {
                            "reprocess_videos": {
                                "config": {"video_ids": [video_ids[0]], "from_stage": "keyframes"}
                            }
                        }
                    },
                }
            },
        )["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        with producer(videoqa_home) as conn:
            deadline = time.monotonic() + 240
            job_id = None
            while job_id is None and time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT id FROM videoqa_jobs WHERE video_id = %s AND source_kind = 'ui'", (video_ids[0],)
                ).fetchone()
                job_id = row[0] if row else None
                time.sleep(1.0)
            assert job_id is not None, "reprocess_videos queued no job"
            final = wait_until_final(conn, [job_id], timeout=240, server=server)
        assert final[job_id][0] == "succeeded", final
        assert video_ids[0] in _partitions(dagster_home)
    finally:
        lingering = server.stop()
        release_embedded_database(videoqa_home)
        shutil.rmtree(root, ignore_errors=True)
    assert not lingering

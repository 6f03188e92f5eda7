"""Jobs through the real daemon: ``dagster dev`` picks up inserted rows and writes the outcome back."""

from __future__ import annotations

import shutil
import tempfile
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

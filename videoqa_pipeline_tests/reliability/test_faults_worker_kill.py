"""The run worker of a job is SIGKILLed in the middle of a step, with ``dagster dev`` (daemon,
code server, webserver) left running: the run ends FAILURE, the job goes back to the queue for
its next attempt, that attempt succeeds, and the tables hold one set of rows for the video.

Who notices: the code server that launched the run (Dagster's default run launcher executes a
run in a child of ``dagster api grpc``) checks its children every half second and reports a
dead one's run as failed; the ledger's run failure sensor (or the run's own failure path) then
puts the job back to pending, as a transient failure. Run monitoring is not involved: the default
run launcher cannot check a worker's health, so enabling ``run_monitoring`` in ``dagster.yaml``
would change nothing here. The test measures how long each part of the detection takes.

Long (a 1080p clip is transcoded, twice): marked ``reliability``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline import media
from videoqa_pipeline.run_tags import JOB_ATTEMPT_TAG
from videoqa_pipeline.storage.blobs import TEMPORARY_PREFIX
from videoqa_pipeline_tests.jobs.daemon import (
    producer,
    runs_per_job,
    start_worker,
    wait_for_table,
    wait_until_final,
)
from videoqa_pipeline_tests.reliability.fault_support import (  # noqa: F401 - fixture
    daemon_homes,
    rows_per_table,
    run_workers,
    wait_for,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

VIDEO_ID = "killed-worker"
SCENES = (12.0, 12.0, 12.0, 12.0)


def test_a_killed_run_worker_fails_its_run_and_the_next_attempt_succeeds(
    daemon_homes: tuple[Path, Path],  # noqa: F811 - the fixture imported above
) -> None:
    dagster_home, videoqa_home = daemon_homes
    # 1080p, so normalizing transcodes to 720p for several seconds: a step to be killed in.
    clip = media.make_sample_video(
        dagster_home.parent / "long.mp4",
        scene_seconds=SCENES,
        width=1920,
        height=1080,
        audio=False,
        preset="ultrafast",
    ).path
    server = start_worker(dagster_home, videoqa_home, "dagster-dev.log", WORKER_MAX_ATTEMPTS="3")
    try:
        wait_for_table(videoqa_home)
        with producer(videoqa_home) as conn:
            row = conn.execute(
                "INSERT INTO videoqa_jobs (source_uri, video_id) VALUES (%s, %s) RETURNING id",
                (str(clip), VIDEO_ID),
            ).fetchone()
            assert row is not None
            job_id = int(row[0])

            def in_second_step() -> bool:
                status = conn.execute("SELECT status FROM videoqa_jobs WHERE id = %s", (job_id,)).fetchone()
                rows = rows_per_table(conn, VIDEO_ID)
                return bool(status and status[0] == "running" and rows["source_video"] == 1)

            wait_for(in_second_step, 240, "the job's run reaching its second step", interval=0.1)
            first_run_id = conn.execute("SELECT run_id FROM videoqa_jobs WHERE id = %s", (job_id,)).fetchone()
            assert first_run_id is not None
            assert rows_per_table(conn, VIDEO_ID)["normalized_video"] == 0, "killed too late: step 2 done"
            [worker] = run_workers(server)
            services = {p.pid for p in server.group_processes() if "dagster" in " ".join(p.cmdline())}
            services -= {worker.pid} | {child.pid for child in worker.children(recursive=True)}
            worker.kill()
            worker.wait(timeout=10)
            with dg.DagsterInstance.from_config(str(dagster_home)) as instance:

                def run_failed() -> bool:
                    run = instance.get_run_by_id(first_run_id[0])
                    return run is not None and run.status == dg.DagsterRunStatus.FAILURE

                run_detected = wait_for(run_failed, 120, "Dagster marking the killed run FAILURE")

            def requeued() -> bool:
                found = conn.execute("SELECT attempts FROM videoqa_jobs WHERE id = %s", (job_id,)).fetchone()
                return bool(found and found[0] >= 2)

            job_detected = wait_for(requeued, 120, "the job starting its second attempt")
            final = wait_until_final(conn, [job_id], timeout=300, server=server)
            attempts, error = conn.execute(
                "SELECT attempts, error FROM videoqa_jobs WHERE id = %s", (job_id,)
            ).fetchone() or (0, None)
            rows = rows_per_table(conn, VIDEO_ID)
        print(
            f"\nworker SIGKILL: run FAILURE after {run_detected:.1f} s, "
            f"job on its next attempt after {run_detected + job_detected:.1f} s"
        )
        assert final[job_id][0] == "succeeded", (final, server.log_tail())
        assert attempts == 2, f"expected one retry after the kill, got {attempts} attempts ({error})"
        # The daemon and the servers survived the worker's death.
        assert services <= {p.pid for p in server.group_processes()}, "a dagster dev service died"
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            runs = runs_per_job(instance)[job_id]
        by_attempt = {run.tags[JOB_ATTEMPT_TAG]: run.status for run in runs}
        assert by_attempt == {"1": dg.DagsterRunStatus.FAILURE, "2": dg.DagsterRunStatus.SUCCESS}, by_attempt
        # One set of rows: one per single-row table, one keyframe per detected scene (at most 50).
        assert rows["source_video"] == rows["normalized_video"] == 1, rows
        assert rows["scenes"] == len(SCENES) and rows["keyframes"] == rows["scenes"], rows
        blob_dir = videoqa_home / "blobs" / VIDEO_ID
        keyframe_files = sorted((blob_dir / "keyframes").iterdir())
        assert len(keyframe_files) == rows["keyframes"], keyframe_files
        assert not [p for p in blob_dir.rglob("*") if p.name.startswith(TEMPORARY_PREFIX)]
    finally:
        lingering = server.stop()
    assert not lingering, lingering

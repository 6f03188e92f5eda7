"""The daemon dies in the middle of a burst of 50 jobs and comes back: every job succeeds exactly once.

Long (a few minutes): marked ``reliability``, run with ``python -m pytest -m reliability``.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from videoqa_pipeline import media
from videoqa_pipeline.run_tags import JOB_ATTEMPT_TAG
from videoqa_pipeline.storage.embedded import release_embedded_database
from videoqa_pipeline_tests.jobs.daemon import (
    producer,
    runs_per_job,
    start_worker,
    wait_for_table,
    wait_until_final,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

BURST = 50
#: Runs killed with the daemon stay "started" in Dagster: the sweeper gives up on them after this.
RUN_TIMEOUT = "20"


@pytest.fixture()
def homes() -> Iterator[tuple[Path, Path]]:
    root = Path(tempfile.mkdtemp(prefix="videoqa-jobs-burst-"))
    root.chmod(0o755)
    yield root / "dagster", root / "videoqa"
    release_embedded_database(root / "videoqa")
    shutil.rmtree(root, ignore_errors=True)


def _succeeded(videoqa_home: Path, ids: list[int]) -> int:
    try:
        with producer(videoqa_home) as conn:
            row = conn.execute(
                "SELECT count(*) FROM videoqa_jobs WHERE id = ANY(%s) AND status = 'succeeded'", (ids,)
            ).fetchone()
    except psycopg.OperationalError:
        return 0
    return int(row[0]) if row else 0


def test_killing_the_daemon_mid_burst_loses_nothing_and_runs_nothing_twice(homes: tuple[Path, Path]) -> None:
    dagster_home, videoqa_home = homes
    clip = media.make_sample_video(
        dagster_home.parent / "clip.mp4", scene_seconds=(1.0, 1.0), audio=False
    ).path
    extra = {"VIDEOQA_RUN_TIMEOUT": RUN_TIMEOUT}
    server = start_worker(dagster_home, videoqa_home, "first.log", **extra)
    try:
        wait_for_table(videoqa_home)
        with producer(videoqa_home) as conn:
            # One file, 50 jobs: each job derives the same video ID, so give each its own.
            ids = []
            for n in range(BURST):
                row = conn.execute(
                    "INSERT INTO videoqa_jobs (source_uri, video_id) VALUES (%s, %s) RETURNING id",
                    (str(clip), f"burst-{n:02d}"),
                ).fetchone()
                assert row is not None
                ids.append(int(row[0]))
        deadline = time.monotonic() + 300
        while _succeeded(videoqa_home, ids) < 5 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _succeeded(videoqa_home, ids) < BURST, "the burst finished before the daemon could be killed"
    finally:
        # The crash: every process of dagster dev at once, no chance to clean up.
        os.killpg(server.pgid, signal.SIGKILL)
        server.stop(grace_seconds=5)
    restarted = start_worker(dagster_home, videoqa_home, "second.log", **extra)
    try:
        with producer(videoqa_home) as conn:
            final = wait_until_final(conn, ids, timeout=900, server=restarted)
    finally:
        restarted.stop()
    assert Counter(state[0] for state in final.values()) == Counter({"succeeded": BURST}), final
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = runs_per_job(instance)
    for job_id in ids:
        job_runs = runs.get(job_id, [])
        successes = [run for run in job_runs if run.status == dg.DagsterRunStatus.SUCCESS]
        assert len(successes) == 1, (job_id, [(r.run_id, r.status) for r in job_runs])
        attempts = Counter(run.tags[JOB_ATTEMPT_TAG] for run in job_runs)
        assert max(attempts.values()) == 1, f"job {job_id} has two runs for one attempt: {attempts}"

"""Load: 100 short videos submitted at once through the ledger, worked off by a real ``dagster dev``
(daemon, queued run coordinator, two runs at once as the repo's ``dagster.yaml`` sets).

Every job must end succeeded, with exactly one run each: ledger counts = Dagster run counts =
materialized partitions. The run workers' memory is sampled with psutil while they run; the
peak per worker, the wall time and the throughput are printed and written to
``test-artifacts/reliability-load.json``. Models are off (the load is on orchestration, the
ledger and the media steps; model throughput is measured by ``benchmarks/bench_ai.py``).

Bounded: the wait gives up after ``LOAD_TIMEOUT`` seconds, and ``dagster dev`` is stopped (its
whole process group) whatever happens. Long (minutes): marked ``reliability``.
``VIDEOQA_LOAD_VIDEOS`` sets another number of videos.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import psutil
import pytest

from videoqa_pipeline import media
from videoqa_pipeline.run_tags import JOB_ATTEMPT_TAG
from videoqa_pipeline_tests.jobs.daemon import (
    producer,
    runs_per_job,
    start_worker,
    wait_for_table,
    wait_until_final,
)
from videoqa_pipeline_tests.pipeline.dagster_dev_server import REPO_ROOT, DagsterDev
from videoqa_pipeline_tests.reliability.fault_support import (  # noqa: F401 - fixture
    daemon_homes,
    rows_per_table,
    run_workers,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

VIDEOS = int(os.environ.get("VIDEOQA_LOAD_VIDEOS", "100"))
LOAD_TIMEOUT = 60 + 20 * VIDEOS
ARTIFACT = REPO_ROOT / "test-artifacts" / "reliability-load.json"


class WorkerMemory:
    """Samples the resident memory of every run worker (with its children: ffmpeg, log tailers)."""

    def __init__(self, server: DagsterDev, interval: float = 0.25) -> None:
        self.server = server
        self.interval = interval
        self.peak_mb: dict[int, float] = {}
        self.peak_own_mb: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for worker in run_workers(self.server):
                try:
                    own = worker.memory_info().rss
                    total = own + sum(child.memory_info().rss for child in worker.children(recursive=True))
                except psutil.Error:
                    continue
                self.peak_own_mb[worker.pid] = max(self.peak_own_mb.get(worker.pid, 0.0), own / 2**20)
                self.peak_mb[worker.pid] = max(self.peak_mb.get(worker.pid, 0.0), total / 2**20)
            self._stop.wait(self.interval)


def test_a_burst_of_videos_all_succeed_once_with_bounded_memory(
    daemon_homes: tuple[Path, Path],  # noqa: F811 - the fixture imported above
) -> None:
    dagster_home, videoqa_home = daemon_homes
    clips = dagster_home.parent / "clips"
    clips.mkdir(parents=True)
    clip = media.make_sample_video(
        clips / "clip.mp4", scene_seconds=(1.0, 1.0), width=320, height=240, audio=False, preset="ultrafast"
    ).path
    # One file per job (distinct sources and partitions), the same content.
    sources = []
    for n in range(VIDEOS):
        copy = clips / f"load-{n:03d}.mp4"
        shutil.copyfile(clip, copy)
        sources.append((str(copy), f"load-{n:03d}"))
    server = start_worker(dagster_home, videoqa_home, "dagster-dev.log", VIDEOQA_MAX_QUEUED_RUNS="10")
    try:
        wait_for_table(videoqa_home)
        with producer(videoqa_home) as conn, WorkerMemory(server) as memory:
            started = time.monotonic()
            with conn.transaction():  # all at once: one transaction
                ids = [
                    int(row[0])
                    for row in conn.execute(
                        "INSERT INTO videoqa_jobs (source_uri, video_id) SELECT * FROM unnest(%s::text[], %s::text[]) "
                        "RETURNING id",
                        ([s for s, _ in sources], [v for _, v in sources]),
                    ).fetchall()
                ]
            final = wait_until_final(conn, ids, timeout=LOAD_TIMEOUT, server=server)
            wall = time.monotonic() - started
            ledger_counts = Counter(state[0] for state in final.values())
            attempts = Counter(
                int(row[0])
                for row in conn.execute(
                    "SELECT attempts FROM videoqa_jobs WHERE id = ANY(%s)", (ids,)
                ).fetchall()
            )
            rows = [rows_per_table(conn, video_id) for _, video_id in sources]
    finally:
        lingering = server.stop()
    assert not lingering, lingering
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = runs_per_job(instance)
        materialized = instance.get_materialized_partitions(dg.AssetKey("embeddings"))
        records = [
            record
            for record in instance.get_run_records()
            if record.start_time is not None and record.end_time is not None
        ]
    # Where a run's time goes: waiting in Dagster's run queue, then its worker (start-up + steps).
    queued_seconds = [record.start_time - record.create_timestamp.timestamp() for record in records]  # type: ignore[operator]
    run_seconds = [record.end_time - record.start_time for record in records]  # type: ignore[operator]
    run_statuses = Counter(run.status.value for job_id in ids for run in runs.get(job_id, []))
    video_ids = {video_id for _, video_id in sources}
    peaks = sorted(memory.peak_mb.values())
    report = {
        "videos": VIDEOS,
        "concurrent_runs": 2,
        "wall_seconds": round(wall, 1),
        "videos_per_minute": round(60 * VIDEOS / wall, 2),
        "ledger": dict(ledger_counts),
        "attempts": {str(k): v for k, v in sorted(attempts.items())},
        "dagster_runs": dict(run_statuses),
        "materialized_partitions": len(video_ids & materialized),
        "run_seconds_median": round(statistics.median(run_seconds), 2) if run_seconds else None,
        "queued_seconds_median": round(statistics.median(queued_seconds), 2) if queued_seconds else None,
        "run_workers_sampled": len(peaks),
        "peak_rss_mb_per_worker": {
            "max": round(max(peaks), 1) if peaks else None,
            "median": round(statistics.median(peaks), 1) if peaks else None,
            "min": round(min(peaks), 1) if peaks else None,
            "max_without_children": round(max(memory.peak_own_mb.values()), 1) if peaks else None,
        },
    }
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nload: {json.dumps(report)}")
    assert ledger_counts == Counter({"succeeded": VIDEOS}), report
    assert run_statuses == Counter({"SUCCESS": VIDEOS}), report  # one run per job, none failed
    for job_id in ids:
        assert [run.tags[JOB_ATTEMPT_TAG] for run in runs[job_id]] == ["1"], runs[job_id]
    assert report["materialized_partitions"] == VIDEOS, report
    assert all(r["source_video"] == 1 and r["keyframes"] == 2 for r in rows), rows
    assert len(peaks) >= VIDEOS // 2, f"only {len(peaks)} of {VIDEOS} run workers were sampled"

"""Job ledger benchmark (not part of the test suite).

Run from the repository root: ``python -m benchmarks.bench_jobs [--pending 10000] [--burst 200] [--jobs 8]``

Prints three tables, each with a baseline measured in the same run:

* **sensor tick time** against the number of pending rows: one job-sensor tick (claim 50 rows,
  build their run requests) with 100 pending rows (baseline) and with ``--pending`` rows. A
  bounded tick (index on ``(status, id)``, ``LIMIT``) costs the same at both sizes.
* **burst intake**: ``--burst`` rows inserted at once; ticks and sensor compute time until every
  row is queued (the wall time under the daemon adds one ``WORKER_POLL_MS`` per tick).
* **insert-to-run-start latency** (p50/p95) under the real daemon (``dagster dev``, embedded
  PostgreSQL, models off): jobs inserted one at a time with ``WORKER_POLL_MS=1500`` (baseline)
  and ``WORKER_POLL_MS=500``. "Queued" is the sensor picking the row up; "started" is the run
  marking its job running.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg

from videoqa_pipeline import media
from videoqa_pipeline.defs.sensors.job_sensor import evaluate_job_tick, sensor_interval_seconds
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.embedded import embedded_database_url, release_embedded_database
from videoqa_pipeline_tests.jobs.daemon import producer, start_worker, wait_for_table
from videoqa_pipeline_tests.storage.conftest import create_scratch_database

JOBS_PER_TICK = 50


def _fresh_database(home: Path) -> Database:
    url = create_scratch_database(embedded_database_url(home))
    database = Database(DatabaseSettings(url=url, home=home, pool_size=2, timeout_seconds=60))
    database.ensure_schema()
    return database


def _fill(database: Database, source: Path, rows: int) -> None:
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO videoqa_jobs (source_uri, video_id) "
            "SELECT %s, 'bench-' || i FROM generate_series(1, %s) AS i",
            (str(source), rows),
        )
        conn.execute("ANALYZE videoqa_jobs")


def _settings(home: Path) -> Settings:
    return Settings.from_env(
        {
            "VIDEOQA_HOME": str(home),
            "VIDEOQA_MAX_QUEUED_RUNS": "100000",
            "VIDEOQA_JOBS_PER_TICK": str(JOBS_PER_TICK),
            "LOG_LEVEL": "WARNING",
        }
    ).validate()


def _create_runs(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """Do what the daemon does with a tick's run requests: create the runs (not launched here)."""
    for request in result.run_requests or []:
        instance.add_run(
            dg.DagsterRun(job_name="video_pipeline", run_id=str(uuid.uuid4()), tags=request.tags)
        )


def _tick_seconds(database: Database, settings: Settings, instance: dg.DagsterInstance, ticks: int) -> float:
    context = dg.build_sensor_context(instance=instance)
    timings = []
    for _ in range(ticks):
        started = time.perf_counter()
        result = evaluate_job_tick(context, database, settings, {})
        timings.append(time.perf_counter() - started)
        assert isinstance(result, dg.SensorResult), result
        _create_runs(instance, result)
    return statistics.median(timings)


def bench_ticks(home: Path, source: Path, pending: int) -> None:
    settings = _settings(home)
    rows = []
    with dg.instance_for_test() as instance:
        for size in (100, pending):
            database = _fresh_database(home)
            _fill(database, source, size)
            seconds = _tick_seconds(database, settings, instance, ticks=min(10, size // JOBS_PER_TICK))
            with database.connection() as conn:
                plan = " ".join(
                    row[0]
                    for row in conn.execute(
                        "EXPLAIN SELECT id FROM videoqa_jobs WHERE status = 'pending' ORDER BY id LIMIT 50 "
                        "FOR UPDATE SKIP LOCKED"
                    )
                )
            rows.append((size, seconds, "table scan" if "Seq Scan" in plan else "index"))
            database.close()
    base = rows[0][1]
    print(f"\nJob sensor tick ({JOBS_PER_TICK} jobs claimed per tick, median of up to 10 ticks)")
    print(f"{'pending rows':>13} {'tick ms':>9} {'vs 100 rows':>12} {'pending query':>14}")
    for size, seconds, plan in rows:
        print(f"{size:>13} {seconds * 1000:>9.1f} {seconds / base:>11.2f}x {plan:>14}")


def bench_burst(home: Path, source: Path, burst: int) -> None:
    settings = _settings(home)
    database = _fresh_database(home)
    _fill(database, source, burst)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        ticks, started = 0, time.perf_counter()
        while True:
            result = evaluate_job_tick(context, database, settings, {})
            if not isinstance(result, dg.SensorResult):
                break
            _create_runs(instance, result)
            ticks += 1
        compute = time.perf_counter() - started
    with database.connection() as conn:
        row = conn.execute("SELECT count(*) FROM videoqa_jobs WHERE status = 'queued'").fetchone()
    queued = int(row[0]) if row else 0
    database.close()
    print(f"\nBurst of {burst} inserted jobs until all are queued ({JOBS_PER_TICK} per tick)")
    slow, fast = sensor_interval_seconds(1500), sensor_interval_seconds(500)
    header = f"{'ticks':>6} {'compute s':>10} {'ms/job':>8} {'wall @1500 ms':>14} {'wall @500 ms':>13}"
    print(f"{header} {'queued':>7}")
    print(
        f"{ticks:>6} {compute:>10.3f} {1000 * compute / burst:>8.2f} "
        f"{ticks * slow + compute:>13.1f}s {ticks * fast + compute:>12.1f}s {queued:>7}"
    )
    print(
        f"(wall <= ticks x sensor interval + compute; intervals are whole seconds: 1500 ms -> {slow} s, 500 ms -> {fast} s)"
    )


def _latencies(poll_ms: int, clips: list[Path], root: Path) -> tuple[list[float], list[float]]:
    dagster_home, videoqa_home = root / f"dagster-{poll_ms}", root / f"videoqa-{poll_ms}"
    server = start_worker(dagster_home, videoqa_home, "dagster-dev.log", WORKER_POLL_MS=str(poll_ms))
    queued, started = [], []
    try:
        wait_for_table(videoqa_home)
        with producer(videoqa_home) as conn:
            for clip in clips:
                row = conn.execute(
                    "INSERT INTO videoqa_jobs (source_uri) VALUES (%s) RETURNING id", (str(clip),)
                ).fetchone()
                assert row is not None
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    state = conn.execute(
                        "SELECT status, extract(epoch FROM queued_at - created_at), "
                        "extract(epoch FROM started_at - created_at) FROM videoqa_jobs WHERE id = %s",
                        (row[0],),
                    ).fetchone()
                    assert state is not None
                    if state[0] in ("succeeded", "failed"):
                        queued.append(float(state[1]))
                        started.append(float(state[2]))
                        break
                    time.sleep(0.2)
                else:
                    raise TimeoutError(f"job {row[0]} did not finish; see {server.log_path}")
    finally:
        server.stop()
        release_embedded_database(videoqa_home)
    return queued, started


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_latency(root: Path, jobs: int) -> None:
    clips = [
        media.make_sample_video(root / f"clip-{n}.mp4", scene_seconds=(1.0, 1.0), audio=False).path
        for n in range(jobs)
    ]
    results = {poll: _latencies(poll, clips, root) for poll in (1500, 500)}
    base = _p(results[1500][1], 0.5)
    print(f"\nInsert-to-run-start latency under dagster dev ({jobs} jobs, one at a time)")
    print(
        f"{'WORKER_POLL_MS':>15} {'queued p50':>11} {'queued p95':>11} {'started p50':>12} {'started p95':>12} {'vs 1500':>8}"
    )
    for poll, (queued, started) in results.items():
        print(
            f"{poll:>15} {_p(queued, 0.5):>10.2f}s {_p(queued, 0.95):>10.2f}s "
            f"{_p(started, 0.5):>11.2f}s {_p(started, 0.95):>11.2f}s {_p(started, 0.5) / base:>7.2f}x"
        )


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("dagster").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pending", type=int, default=10_000, help="pending rows for the tick benchmark")
    parser.add_argument(
        "--burst", type=int, default=200, help="jobs inserted at once for the burst benchmark"
    )
    parser.add_argument("--jobs", type=int, default=8, help="jobs per latency measurement (0 skips it)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="videoqa-bench-jobs-"))
    root.chmod(0o755)
    home = root / "home"
    try:
        source = media.make_sample_video(root / "source.mp4", scene_seconds=(1.0,), audio=False).path
        bench_ticks(home, source, args.pending)
        bench_burst(home, source, args.burst)
        release_embedded_database(home)
        if args.jobs:
            bench_latency(root, args.jobs)
    finally:
        release_embedded_database(home)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

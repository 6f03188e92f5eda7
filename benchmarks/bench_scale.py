"""Scale benchmark (not part of the test suite): the service, search and Dagster at N videos.

Run from the repository root::

    python -m benchmarks.bench_scale                          # 1k, 10k, 100k videos (about 20 min)
    python -m benchmarks.bench_scale --sizes 1000,10000       # quicker
    python -m benchmarks.bench_scale --million                # adds 1M
    python -m benchmarks.bench_scale --working-set 0          # every video a partition (the old design)

For each N the library is built from scratch with bulk SQL (``INSERT ... SELECT
generate_series``), in an embedded PostgreSQL with pgvector:

* the ledger: N jobs over 347 days at N = 1M (one every 30 s; 2 % failed, 0.3 % cancelled, the
  newest 0.1 % pending, the rest succeeded with step timings), N ``videoqa_videos`` and
  ``videoqa_normalized_media`` rows;
* N ``videoqa_embeddings`` (10 items per video over N/10 videos: unit vectors of dimension 384,
  each the normalized sum of two of 2,000 random unit vectors, texts of 12 words drawn with a
  skew from 2,000 invented words) and N ``videoqa_keyframes``; HNSW and GIN built after loading;
* a Dagster instance on PostgreSQL storage (``dagster-postgres``) holding what the partition working
  set leaves there: the newest ``--working-set`` videos (and 1,000 more, which the real retirement
  then removes, timed), or all N with ``--working-set 0``: their dynamic partitions of ``videos``,
  one successful run per video (with the job sensor's tags), and per asset and partition one
  ``ASSET_MATERIALIZATION_PLANNED`` and one ``ASSET_MATERIALIZATION`` event, copied from events
  stored by Dagster's own API (templates whose run ID and partition are replaced).

Then it measures, with the 1k figures (the smallest size) as the baseline of the ratios:

* ``videoqa reprocess --dry-run`` selections (the whole library, one collection, stale embeddings);
* ``/stats``, ``/jobs/peek`` and ``GET /search`` (hybrid; with a ``video`` filter; with a time
  range) p50/p95 through ``videoqa serve`` on loopback, and ``videoqa status`` as a command;
* every SQL statement those make, replayed under ``EXPLAIN (ANALYZE, BUFFERS)``: its time and
  whether it scans a whole table (``Seq Scan``); all plans go to ``--artifact``;
* through ``dagster dev`` against the instance: the asset catalog (every asset with its partition
  counts and latest materialization) and the Partitions tab of ``embeddings`` (Dagster's own
  ``PartitionHealthQuery``), warm, then again right after one more video is added;
* the real job sensor evaluated with ``build_sensor_context`` against the instance for 50 new
  jobs, then the same 50 jobs through the daemon of ``dagster dev``: the tick's duration (from
  Dagster's tick record), runs created per second, and new PostgreSQL connections during it.

``--dagster-max`` bounds the sizes that get the Dagster part (with ``--working-set 0``, 7 million
events at 1M do not fit this machine's time budget: use 100000). Talks to 127.0.0.1 and Unix
sockets only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import psycopg
import yaml

from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.embedded import embedded_database_url, release_embedded_database
from videoqa_pipeline.storage.migrations import hnsw_index_name
from videoqa_pipeline_tests.pipeline import dagster_dev_server as dev
from videoqa_pipeline_tests.query_plans import explain, recorded_statements

DIMENSION = 384
ITEMS_PER_VIDEO = 10
VOCABULARY = 2000
SENSOR_JOBS = 50
REPO = Path(__file__).resolve().parents[1]
SECRET = "whsec_" + "YmVuY2gtc2NhbGUtc2VjcmV0LWZvci10aGUtbG9vcGJhY2stc2VydmljZQ"


def scratch_database(admin_url: str, prefix: str) -> str:
    """A new empty database on the server of ``admin_url`` (a URL); returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def video_name(number: int) -> str:
    return f"v{number:07d}"


def invented_words(count: int) -> list[str]:
    """Pronounceable words ending in a vowel (so search's light stemming leaves them alone)."""
    rng = np.random.default_rng(11)
    consonants, vowels = "bdfgklmnprtvz", "aeiou"
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(3)))
    return sorted(words)


# ------------------------------------------------------------------ the videoqa library


def _load_vector_pool(conn: psycopg.Connection) -> None:
    """2,000 random unit vectors; each stored vector is the normalized sum of two of them."""
    conn.execute("DROP TABLE IF EXISTS bench_vectors")
    conn.execute(f"CREATE TABLE bench_vectors (id integer PRIMARY KEY, v vector({DIMENSION}))")
    vectors = np.random.default_rng(5).standard_normal((2000, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with conn.cursor().copy("COPY bench_vectors (id, v) FROM STDIN") as copy:
        for number, vector in enumerate(vectors):
            copy.write_row((number, "[" + ",".join(f"{value:.6f}" for value in vector) + "]"))


LEDGER_SQL = """
INSERT INTO videoqa_jobs (id, video_id, source_uri, source_kind, status, attempts, run_id, error,
                          failed_step, transient, step_seconds, created_at, queued_at, started_at,
                          finished_at, updated_at)
SELECT g, s.video, 's3://bench/c' || (g %% 1000) || '/' || g || '.mp4', 'postgres', s.status,
       CASE WHEN s.status = 'pending' THEN 0 ELSE 1 END,
       CASE WHEN s.status = 'pending' THEN NULL ELSE md5('run' || g)::uuid::text END,
       CASE WHEN s.status = 'failed' THEN 'normalized_video: ffmpeg could not decode the stream' END,
       CASE WHEN s.status = 'failed' THEN 'normalized_video' END,
       CASE WHEN s.status = 'failed' THEN false END,
       CASE WHEN s.status = 'succeeded' THEN jsonb_build_object(
            'source_video', 0.4 + (g %% 7) / 10.0, 'normalized_video', 2.1 + (g %% 13) / 10.0,
            'transcript', 1.5 + (g %% 11) / 10.0, 'scenes', 0.6, 'keyframes', 0.3,
            'frame_analyses', 1.2, 'embeddings', 0.2) END,
       s.at, s.at + interval '2 s', CASE WHEN s.status <> 'pending' THEN s.at + interval '3 s' END,
       CASE WHEN s.status IN ('succeeded', 'failed', 'cancelled') THEN s.at + interval '12 s' END,
       s.at + interval '12 s'
FROM generate_series(0, %(count)s - 1) AS g,
     LATERAL (SELECT 'v' || lpad(g::text, 7, '0') AS video,
                     now() - (%(count)s - g) * interval '30 s' AS at,
                     CASE WHEN g >= %(count)s - %(pending)s THEN 'pending'
                          WHEN g %% 50 = 7 THEN 'failed' WHEN g %% 333 = 5 THEN 'cancelled'
                          ELSE 'succeeded' END AS status) AS s
"""

VIDEOS_SQL = """
INSERT INTO videoqa_videos (video_id, source_uri, blob_key, size_bytes, duration_seconds, container,
                            video_codec, width, height, fps, has_audio)
SELECT 'v' || lpad(g::text, 7, '0'), 's3://bench/' || g || '.mp4', 'v/' || g || '/source/original.mp4',
       5000000 + (g %% 1000) * 10000, 60 + g %% 600, 'mp4', 'h264', 1280, 720, 30, true
FROM generate_series(0, %(count)s - 1) AS g;
INSERT INTO videoqa_normalized_media (video_id, video_blob_key, audio_blob_key, width, height, fps,
                                      duration_seconds, video_size_bytes, audio_size_bytes)
SELECT 'v' || lpad(g::text, 7, '0'), 'v/' || g || '/normalized/video.mp4', 'v/' || g || '/normalized/audio.wav',
       1280, 720, 30, 60 + g %% 600, 3000000 + (g %% 100) * 1000, 1900000
FROM generate_series(0, %(count)s - 1) AS g
"""

ITEMS_SQL = """
INSERT INTO videoqa_keyframes (video_id, scene_index, timestamp_seconds, blob_key, width, height, size_bytes)
SELECT 'v' || lpad((g / 10)::text, 7, '0'), g %% 10, (g %% 10) * 6.0 + 1, 'v/' || g / 10 || '/keyframes/' || g %% 10 || '.jpg',
       640, 360, 40000 FROM generate_series(0, %(count)s - 1) AS g;
INSERT INTO videoqa_embeddings (video_id, item_index, kind, start_seconds, end_seconds, text, model,
                                dimension, embedding)
SELECT 'v' || lpad((g / 10)::text, 7, '0'), g %% 10, CASE WHEN g %% 3 = 0 THEN 'frame' ELSE 'transcript' END,
       (g %% 10) * 6.0, (g %% 10) * 6.0 + 6, t.text, %(model)s, 384, l2_normalize(a.v + b.v)
FROM generate_series(0, %(count)s - 1) AS g
JOIN bench_vectors a ON a.id = g %% 1000
JOIN bench_vectors b ON b.id = 1000 + (g / 1000) %% 1000
CROSS JOIN LATERAL (SELECT string_agg((%(words)s::text[])[1 + floor(power(random(), 3) * %(vocabulary)s)::int], ' ') AS text
                    FROM generate_series(1, 12) WHERE g IS NOT NULL) AS t
"""


def build_library(db: Database, count: int, model: str, words: list[str]) -> dict[str, float]:
    """Empty the tables and fill them for ``count`` videos; returns seconds per phase."""
    timings: dict[str, float] = {}
    with db.connection() as conn:
        conn.execute(
            "TRUNCATE videoqa_jobs, videoqa_schedulers, videoqa_videos, videoqa_normalized_media, videoqa_keyframes, "
            "videoqa_embeddings"
        )
        conn.execute(f"DROP INDEX IF EXISTS {hnsw_index_name(DIMENSION)}")
        conn.execute("DROP INDEX IF EXISTS videoqa_embeddings_search_tsv_idx")
        conn.commit()
        _load_vector_pool(conn)
        started = time.perf_counter()
        conn.execute(LEDGER_SQL, {"count": count, "pending": max(1, count // 1000)})
        conn.execute("SELECT setval(pg_get_serial_sequence('videoqa_jobs', 'id'), %s)", (count,))
        conn.commit()
        timings["ledger"] = time.perf_counter() - started
        started = time.perf_counter()
        for statement in VIDEOS_SQL.split(";\n"):
            conn.execute(statement, {"count": count})
        params = {"count": count, "model": model, "words": words, "vocabulary": len(words)}
        for statement in ITEMS_SQL.split(";\n"):
            conn.execute(statement, params)
        conn.commit()
        timings["tables"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute(
            "CREATE INDEX videoqa_embeddings_search_tsv_idx ON videoqa_embeddings USING gin (search_tsv)"
        )
        conn.execute(
            f"""CREATE INDEX {hnsw_index_name(DIMENSION)} ON videoqa_embeddings
                USING hnsw ((embedding::vector({DIMENSION})) vector_cosine_ops) WHERE dimension = {DIMENSION}"""
        )
        conn.commit()
        timings["indexes"] = time.perf_counter() - started
    with db.connection() as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return timings


# ------------------------------------------------------------------ what the hot paths run


# ------------------------------------------------------------------ the service


@contextlib.contextmanager
def videoqa_service(url: str, home: Path) -> Iterator[str]:
    """``videoqa serve`` on a free loopback port; yields its base URL."""
    port = dev.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "VIDEOQA_HOME": str(home),
        "JOB_SOURCE_TYPE": "postgres,webhook",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_PORT": str(port),
        "WORKER_DEV_HTTP": "true",
        "WORKER_HTTP_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "videoqa_pipeline.cli", "serve", "--host", "127.0.0.1", "--no-callbacks"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("videoqa serve did not start")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            time.sleep(0.3)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        if process.poll() is None:
            process.kill()


def time_requests(base: str, path: str, repeats: int) -> tuple[float, float]:
    """p50 and p95 in ms of ``repeats`` GETs of ``path`` (after two unmeasured ones)."""
    samples: list[float] = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for number in range(repeats + 2):
            started = time.perf_counter()
            response = client.get(path)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
            if number >= 2:
                samples.append(elapsed * 1000)
    return statistics.median(samples), percentile(samples, 0.95)


def search_paths(words: list[str], count: int) -> dict[str, list[str]]:
    """Search requests: hybrid over everything, one video, and a time range; mid-frequency words."""
    rng = np.random.default_rng(3)
    queries = [" ".join(rng.choice(words[20:400], 3)) for _ in range(8)]
    videos = [video_name(int(n)) for n in rng.integers(0, max(1, count // ITEMS_PER_VIDEO), 8)]
    return {
        "search": [f"/search?q={q.replace(' ', '+')}" for q in queries],
        "search, one video": [
            f"/search?q={q.replace(' ', '+')}&video={v}" for q, v in zip(queries, videos, strict=True)
        ],
        "search, 0-20 s": [f"/search?q={q.replace(' ', '+')}&start=0&end=20" for q in queries],
    }


def time_paths(base: str, paths: list[str], repeats: int) -> tuple[float, float]:
    samples: list[float] = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for path in paths[:2]:
            client.get(path)
        for number in range(repeats):
            path = paths[number % len(paths)]
            started = time.perf_counter()
            response = client.get(path)
            samples.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    return statistics.median(samples), percentile(samples, 0.95)


def time_status_command(url: str, home: Path) -> float:
    """Median wall seconds of ``videoqa status`` (a fresh process each time, as a user runs it)."""
    env = {**os.environ, "DATABASE_URL": url, "VIDEOQA_HOME": str(home), "LOG_LEVEL": "WARNING"}
    samples = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "videoqa_pipeline.cli", "status"], env=env, check=True, capture_output=True
        )
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def hot_path_plans(
    db: Database, settings_env: dict[str, str], model_words: list[str]
) -> list[dict[str, Any]]:
    """EXPLAIN ANALYZE of every statement that ``/stats``, ``/jobs/peek``, ``videoqa status`` and
    search (with its filters) run, called in-process with the same functions the routes call."""
    from videoqa_pipeline.ai import AIConfig, get_embedder
    from videoqa_pipeline.search import PostgresSearchBackend, Searcher, SearchFilters
    from videoqa_pipeline.service import stats
    from videoqa_pipeline.settings import Settings
    from videoqa_pipeline.storage import ledger

    settings = Settings.from_env(settings_env).validate()
    searcher = Searcher(PostgresSearchBackend(db), get_embedder(AIConfig.from_env({})))
    query = " ".join(model_words[30:33])
    calls: dict[str, Callable[[], Any]] = {
        "/stats": lambda: stats.collect_stats(db, settings),
        "/jobs/peek": lambda: stats.peek_jobs(db, 10),
        "videoqa status": lambda: (ledger.list_jobs(db, limit=20), ledger.count_by_status(db)),
        "videoqa status --status failed": lambda: ledger.list_jobs(db, limit=20, status="failed"),
        "search": lambda: searcher.search(query),
        "search, one video": lambda: searcher.search(
            query, filters=SearchFilters(video_ids=(video_name(7),))
        ),
        "search, 0-20 s": lambda: searcher.search(
            query, filters=SearchFilters(start_seconds=0, end_seconds=20)
        ),
    }
    plans: list[dict[str, Any]] = []
    for name, call in calls.items():
        call()
        with recorded_statements() as seen:
            call()
        for statement in explain(db, seen):
            plans.append(
                {
                    "path": name,
                    "sql": statement.sql[:300],
                    "ms": statement.milliseconds,
                    "rows_read": statement.rows_read,
                    "seq_scans": list(statement.seq_scans),
                    "plan": statement.plan,
                }
            )
    return plans


# ------------------------------------------------------------------ Dagster


TEMPLATE_PARTITION = "zz-template-partition"
TEMPLATE_RUN = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"


def dagster_yaml(dagster_home: Path, url: str) -> None:
    """The repo's instance settings on PostgreSQL storage, with no run launched (runs stay queued)."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    for section in ("storage", "local_artifact_storage", "compute_logs"):
        config.pop(section, None)
    postgres_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    config["storage"] = {"postgres": {"postgres_url": postgres_url}}
    config["concurrency"]["runs"]["max_concurrent_runs"] = 0
    config["run_monitoring"] = {"enabled": False}
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))


def _store_templates(instance: Any, stages: tuple[str, ...]) -> None:
    """One run and, per asset, a planned and a materialization event, through Dagster's API."""
    import dagster as dg
    from dagster._core.events import (
        AssetMaterializationPlannedData,
        DagsterEvent,
        DagsterEventType,
        StepMaterializationData,
    )
    from dagster._core.events.log import EventLogEntry

    tags = {
        "dagster/partition": TEMPLATE_PARTITION,
        "dagster/sensor_name": "job_sensor",
        "dagster/run_key": "job-JOBID-attempt-1",
        "videoqa/job_id": "JOBID",
        "videoqa/job_attempt": "1",
        "videoqa/source_kind": "postgres",
        "videoqa/source_uri": "s3://bench/JOBID.mp4",
        "dagster/max_runtime": "3600",
    }
    run = dg.DagsterRun(
        job_name="video_pipeline", run_id=TEMPLATE_RUN, status=dg.DagsterRunStatus.SUCCESS, tags=tags
    )
    instance.add_run(run)
    metadata = {
        "rows": dg.MetadataValue.int(12),
        "seconds": dg.MetadataValue.float(1.234),
        "model": dg.MetadataValue.text("all-MiniLM-L6-v2@int8"),
        "preview": dg.MetadataValue.md(
            "| start | text |\n|---|---|\n" + "| 0.0 | a sentence of the transcript |\n" * 6
        ),
        "table": dg.MetadataValue.text("videoqa_embeddings"),
        "blob_bytes": dg.MetadataValue.int(123456),
    }
    for stage in stages:
        key = dg.AssetKey(stage)
        planned = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value,
            job_name="video_pipeline",
            event_specific_data=AssetMaterializationPlannedData(key, partition=TEMPLATE_PARTITION),
        )
        done = DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name="video_pipeline",
            step_key=stage,
            event_specific_data=StepMaterializationData(
                dg.AssetMaterialization(asset_key=key, partition=TEMPLATE_PARTITION, metadata=metadata)
            ),
        )
        for event in (planned, done):
            instance.store_event(
                EventLogEntry(
                    user_message="",
                    level=20,
                    job_name="video_pipeline",
                    run_id=TEMPLATE_RUN,
                    error_info=None,
                    timestamp=time.time(),
                    step_key=event.step_key,
                    dagster_event=event,
                )
            )


def _replace(column: str) -> str:
    """SQL that turns a template column into video ``g``'s (run ID, partition, job ID)."""
    return (
        f"replace(replace(replace({column}, '{TEMPLATE_RUN}', md5('run' || g)::uuid::text), "
        f"'{TEMPLATE_PARTITION}', 'v' || lpad(g::text, 7, '0')), 'JOBID', (g + 1)::text)"
    )


def build_dagster_history(url: str, dagster_home: Path, count: int, first: int = 0) -> float:
    """Fill an empty instance with the partitions, runs and events of ``count`` videos from number
    ``first`` on (the newest of the library when it holds a working set); returns seconds."""
    import dagster as dg

    from videoqa_pipeline.defs.jobs import PIPELINE_STAGES

    started = time.perf_counter()
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        _store_templates(instance, PIPELINE_STAGES)
    with psycopg.connect(url) as conn:
        params = {"first": first, "last": first + count - 1}
        conn.execute(
            f"""INSERT INTO runs (run_id, snapshot_id, pipeline_name, mode, status, run_body, partition,
                                 partition_set, create_timestamp, update_timestamp, start_time, end_time)
                SELECT md5('run' || g)::uuid::text, snapshot_id, pipeline_name, mode, status, {_replace("run_body")},
                       'v' || lpad(g::text, 7, '0'), partition_set, create_timestamp, update_timestamp,
                       start_time, end_time
                FROM runs, generate_series(%(first)s::bigint, %(last)s::bigint) AS g WHERE run_id = '{TEMPLATE_RUN}'""",
            params,
        )
        conn.execute(
            f"""INSERT INTO run_tags (run_id, key, value)
                SELECT md5('run' || g)::uuid::text, key, {_replace("value")}
                FROM run_tags, generate_series(%(first)s::bigint, %(last)s::bigint) AS g WHERE run_id = '{TEMPLATE_RUN}'""",
            params,
        )
        conn.execute(
            f"""INSERT INTO event_logs (run_id, event, dagster_event_type, timestamp, step_key, asset_key, partition)
                SELECT md5('run' || g)::uuid::text, {_replace("event")}, dagster_event_type, timestamp, step_key,
                       asset_key, 'v' || lpad(g::text, 7, '0')
                FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
                     LATERAL (SELECT * FROM event_logs WHERE run_id = '{TEMPLATE_RUN}' ORDER BY id) AS template""",
            params,
        )
        conn.execute(
            """INSERT INTO dynamic_partitions (partitions_def_name, partition)
               SELECT 'videos', 'v' || lpad(g::text, 7, '0') FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g""",
            params,
        )
        conn.execute(f"DELETE FROM event_logs WHERE run_id = '{TEMPLATE_RUN}'")
        conn.execute(f"DELETE FROM runs WHERE run_id = '{TEMPLATE_RUN}'")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


CATALOG_QUERY = """query BenchCatalog {
  assetNodes { id assetKey { path }
    partitionStats { numMaterialized numMaterializing numPartitions numFailed }
    assetMaterializations(limit: 1) { timestamp runId } } }"""

PARTITIONS_QUERY = """query PartitionHealthQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) { ... on AssetNode { id
    partitionKeysByDimension { name type partitionKeys }
    assetPartitionStatuses { ... on DefaultPartitionStatuses {
      materializedPartitions materializingPartitions failedPartitions } } } } }"""


def timed_graphql(server: dev.DagsterDev, query: str, variables: dict[str, Any] | None = None) -> float:
    started = time.perf_counter()
    data = server.graphql(query, variables, timeout=600)
    elapsed = time.perf_counter() - started
    if "assetNodes" in data and not data["assetNodes"]:
        raise RuntimeError("the asset catalog is empty: the code location did not load")
    return elapsed


@contextlib.contextmanager
def dagster_dev(
    dagster_home: Path, videoqa_home: Path, env: dict[str, str], log: Path
) -> Iterator[dev.DagsterDev]:
    """``dagster dev`` (webserver and daemon) against the benchmark's instance."""
    port = dev.free_port()
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(REPO / "workspace.yaml"),
        "-h",
        dev.LOOPBACK,
        "-p",
        str(port),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=dev.dagster_dev_environment(dagster_home, videoqa_home, env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = dev.DagsterDev(process, port, dagster_home, videoqa_home, log)
    try:
        dev._wait_until_ready(server, 300)
        yield server
    finally:
        server.stop(grace_seconds=20)


def add_one_video(dagster_home: Path, number: int) -> None:
    """What one more video leaves in Dagster: a new partition and one materialization per asset."""
    import dagster as dg

    from videoqa_pipeline.defs.jobs import PIPELINE_STAGES

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        key = video_name(number)
        instance.add_dynamic_partitions("videos", [key])
        for stage in PIPELINE_STAGES:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=stage, partition=key))


def measure_catalog(server: dev.DagsterDev, dagster_home: Path, count: int) -> dict[str, float]:
    """Catalog and Partitions tab: first load, warm, and first load after one more video."""
    partitions = {"assetKey": {"path": ["embeddings"]}}
    result = {
        "catalog first": timed_graphql(server, CATALOG_QUERY),
        "catalog warm": min(timed_graphql(server, CATALOG_QUERY) for _ in range(3)),
        "partitions first": timed_graphql(server, PARTITIONS_QUERY, partitions),
        "partitions warm": min(timed_graphql(server, PARTITIONS_QUERY, partitions) for _ in range(3)),
    }
    add_one_video(dagster_home, count + 1)
    result["catalog after +1 video"] = timed_graphql(server, CATALOG_QUERY)
    result["catalog warm again"] = min(timed_graphql(server, CATALOG_QUERY) for _ in range(2))
    add_one_video(dagster_home, count + 2)
    result["partitions after +1 video"] = timed_graphql(server, PARTITIONS_QUERY, partitions)
    return result


def insert_jobs(url: str, source: Path, first: int, jobs: int) -> None:
    """``jobs`` new pending jobs, as a producer's INSERT makes them."""
    with psycopg.connect(url) as conn:
        conn.execute(
            """INSERT INTO videoqa_jobs (source_uri, video_id)
               SELECT %s, 'new-' || g FROM generate_series(%s, %s - 1) AS g""",
            (str(source), first, first + jobs),
        )


def sensor_function_seconds(
    url: str, home: Path, dagster_home: Path, source: Path, settings_env: dict[str, str]
) -> float:
    """One evaluation of the real job sensor (build_sensor_context, the PostgreSQL instance) that
    claims 50 new jobs; the jobs are then cancelled so the daemon does not see them."""
    import dagster as dg

    from videoqa_pipeline.defs.jobs import VIDEO_PIPELINE_JOB
    from videoqa_pipeline.defs.resources import DatabaseResource
    from videoqa_pipeline.defs.sensors.job_sensor import build_job_sensor
    from videoqa_pipeline.settings import Settings

    settings = Settings.from_env(settings_env).validate()
    insert_jobs(url, source, 0, SENSOR_JOBS)
    sensor = build_job_sensor(settings, VIDEO_PIPELINE_JOB)
    resource = DatabaseResource(database_url=url, home=str(home), pool_size=3, timeout_seconds=60)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        context = dg.build_sensor_context(instance=instance, resources={"database": resource})
        started = time.perf_counter()
        result = sensor(context)
        elapsed = time.perf_counter() - started
    if not isinstance(result, dg.SensorResult) or len(result.run_requests or []) != SENSOR_JOBS:
        raise RuntimeError(f"the job sensor did not request {SENSOR_JOBS} runs: {result}")
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE videoqa_jobs SET status = 'cancelled' WHERE video_id LIKE 'new-%%' AND status = 'queued'"
        )
    return elapsed


def sessions(admin_url: str) -> int:
    with psycopg.connect(admin_url) as conn:
        row = conn.execute("SELECT sum(sessions) FROM pg_stat_database").fetchone()
    return int(row[0]) if row else 0


def daemon_tick(dagster_url: str, url: str, admin_url: str, source: Path) -> dict[str, float]:
    """50 new jobs through the daemon's job sensor: tick seconds, runs/s, new connections."""
    from dagster._core.scheduler.instigation import TickData
    from dagster._serdes import deserialize_value

    with psycopg.connect(dagster_url) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM job_ticks").fetchone()
    last_tick = int(row[0]) if row else 0
    idle_start, idle_clock = sessions(admin_url), time.monotonic()
    time.sleep(10)
    idle_rate = (sessions(admin_url) - idle_start) / (time.monotonic() - idle_clock)
    before = sessions(admin_url)
    insert_jobs(url, source, SENSOR_JOBS, SENSOR_JOBS)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with psycopg.connect(dagster_url) as conn:
            rows = conn.execute(
                "SELECT tick_body FROM job_ticks WHERE id > %s ORDER BY id", (last_tick,)
            ).fetchall()
        for (body,) in rows:
            tick = deserialize_value(body, TickData)
            if (
                tick.instigator_name == "job_sensor"
                and len(tick.run_ids) >= SENSOR_JOBS
                and tick.end_timestamp
            ):
                seconds = tick.end_timestamp - tick.timestamp
                connections = sessions(admin_url) - before
                return {
                    "tick seconds": seconds,
                    "runs per second": len(tick.run_ids) / seconds,
                    "new connections": connections,
                    "idle connections per second": idle_rate,
                }
        time.sleep(0.5)
    raise RuntimeError("the daemon's job sensor did not request the 50 runs within 10 minutes")


# ------------------------------------------------------------------ one size, the whole run


@dataclass
class Size:
    count: int
    build: dict[str, float] = field(default_factory=dict)
    service: dict[str, tuple[float, float]] = field(default_factory=dict)
    status_seconds: float = 0.0
    selections: dict[str, tuple[int, float]] = field(default_factory=dict)
    plans: list[dict[str, Any]] = field(default_factory=list)
    dagster: dict[str, float] = field(default_factory=dict)


@dataclass
class Environment:
    admin_url: str
    url: str
    home: Path
    source: Path
    model: str
    words: list[str]
    db: Database
    settings_env: dict[str, str]
    working_set: int


def measure_size(env: Environment, count: int, repeats: int, dagster: bool) -> Size:
    size = Size(count)
    size.build = build_library(env.db, count, env.model, env.words)
    print(f"  {count:>8} videos: library built {size.build}", flush=True)
    size.plans = hot_path_plans(env.db, env.settings_env, env.words)
    with videoqa_service(env.url, env.home) as base:
        size.service["/stats"] = time_requests(base, "/stats", repeats)
        size.service["/jobs/peek"] = time_requests(base, "/jobs/peek?limit=10", repeats)
        for name, paths in search_paths(env.words, count).items():
            size.service[name] = time_paths(base, paths, repeats)
    size.status_seconds = time_status_command(env.url, env.home)
    size.selections = time_selections(env.db, env.model)
    print(
        f"           service {size.service}, videoqa status {size.status_seconds:.2f} s, "
        f"selections {size.selections}",
        flush=True,
    )
    if dagster:
        size.dagster = measure_dagster(env, count)
        print(f"           dagster {size.dagster}", flush=True)
    return size


def time_selections(db: Database, model: str) -> dict[str, tuple[int, float]]:
    """`videoqa reprocess --dry-run` selections over the whole library: (videos, seconds)."""
    from videoqa_pipeline.storage.reprocess import VideoSelection, count_selected

    selections = {
        "every video": VideoSelection(every_video=True),
        "a collection (1 in 1,000 sources)": VideoSelection(source_prefix="s3://bench/c7/"),
        "stale embeddings": VideoSelection(embedding_model_other_than=model + "-previous"),
    }
    timed: dict[str, tuple[int, float]] = {}
    for name, selection in selections.items():
        started = time.perf_counter()
        videos = count_selected(db, selection)
        timed[name] = (videos, time.perf_counter() - started)
    return timed


#: Videos beyond the working set given to Dagster, and retired by the real code before measuring.
RETIRED_SAMPLE = 1000


def retire_beyond_working_set(dagster_home: Path, db: Database, keep: int, held: int) -> float:
    """The working-set sensor's pass over a full instance: seconds per 1,000 videos retired."""
    import dagster as dg

    from videoqa_pipeline.defs.partitions import VIDEOS_PARTITIONS_NAME
    from videoqa_pipeline.defs.working_set import retire_partitions

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        started = time.perf_counter()
        result = retire_partitions(instance, db, keep, time_budget=float("inf"))
        elapsed = time.perf_counter() - started
        left = len(instance.get_dynamic_partitions(VIDEOS_PARTITIONS_NAME))
    if len(result.retired) != held - keep or left != keep:
        raise RuntimeError(f"retirement left {left} partitions of {held} (keep {keep}): {result.summary()}")
    return elapsed / len(result.retired) * 1000


def measure_dagster(env: Environment, count: int) -> dict[str, float]:
    dagster_url = scratch_database(env.admin_url, "bench_dagster")
    dagster_home = Path(tempfile.mkdtemp(prefix="bench-scale-dagster-"))
    keep = env.working_set
    # Holding a working set, Dagster has the newest `keep` videos (and a sample beyond it, which
    # the real retirement removes first); without one, every video of the library.
    held = min(count, keep + RETIRED_SAMPLE) if keep else count
    try:
        dagster_yaml(dagster_home, dagster_url)
        import dagster as dg

        with dg.DagsterInstance.from_config(str(dagster_home)):
            pass  # creates the schema
        result: dict[str, float] = {
            "partitions held": float(min(held, keep) if keep else held),
            "history seconds": build_dagster_history(dagster_url, dagster_home, held, first=count - held),
        }
        if keep and held > keep:
            result["retire seconds per 1k videos"] = retire_beyond_working_set(
                dagster_home, env.db, keep, held
            )
        with psycopg.connect(env.url) as conn:
            conn.execute("UPDATE videoqa_jobs SET status = 'cancelled' WHERE status = 'pending'")
        result["sensor function seconds"] = sensor_function_seconds(
            env.url, env.home, dagster_home, env.source, env.settings_env
        )
        dev_env = {**env.settings_env, "DATABASE_URL": env.url}
        with dagster_dev(dagster_home, env.home, dev_env, dagster_home / "dagster-dev.log") as server:
            result.update(measure_catalog(server, dagster_home, count))
            result.update(daemon_tick(dagster_url, env.url, env.admin_url, env.source))
        return result
    finally:
        shutil.rmtree(dagster_home, ignore_errors=True)
        with psycopg.connect(env.admin_url, autocommit=True) as conn:
            name = urlsplit(dagster_url).path.lstrip("/")
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BIG_TABLES = {
    "videoqa_jobs",
    "videoqa_videos",
    "videoqa_normalized_media",
    "videoqa_keyframes",
    "videoqa_embeddings",
}


def _table(header: list[str], rows: list[list[object]]) -> str:
    cells = [header, *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def service_rows(sizes: list[Size]) -> list[list[object]]:
    base = sizes[0]
    rows: list[list[object]] = []
    for size in sizes:
        for name, (p50, p95) in size.service.items():
            ratio = p95 / base.service[name][1]
            rows.append([f"{size.count:,}", name, f"{p50:.1f}", f"{p95:.1f}", f"{ratio:.2f}"])
        for name, (videos, seconds) in size.selections.items():
            rows.append(
                [
                    f"{size.count:,}",
                    f"reprocess --dry-run, {name}: {videos:,} videos",
                    f"{seconds * 1000:.0f}",
                    "",
                    "",
                ]
            )
        ratio = size.status_seconds / base.status_seconds
        rows.append(
            [
                f"{size.count:,}",
                "videoqa status (command)",
                f"{size.status_seconds * 1000:.0f}",
                "",
                f"{ratio:.2f}",
            ]
        )
    return rows


def plan_rows(sizes: list[Size]) -> list[list[object]]:
    rows: list[list[object]] = []
    for size in sizes:
        paths: dict[str, list[dict[str, Any]]] = {}
        for plan in size.plans:
            paths.setdefault(plan["path"], []).append(plan)
        for path, plans in paths.items():
            scans = sorted({table for plan in plans for table in plan["seq_scans"] if table in BIG_TABLES})
            slowest = max(plans, key=lambda plan: plan["ms"])
            read = sum(
                count for plan in plans for table, count in plan["rows_read"].items() if table in BIG_TABLES
            )
            rows.append(
                [
                    f"{size.count:,}",
                    path,
                    len(plans),
                    f"{sum(p['ms'] for p in plans):.1f}",
                    f"{slowest['ms']:.1f}",
                    f"{read:,}",
                    ", ".join(scans) or "none",
                ]
            )
    return rows


DAGSTER_COLUMNS = (
    "partitions held",
    "catalog warm",
    "catalog after +1 video",
    "partitions warm",
    "partitions after +1 video",
    "sensor function seconds",
    "tick seconds",
    "runs per second",
    "new connections",
)


def dagster_rows(sizes: list[Size]) -> list[list[object]]:
    measured = [size for size in sizes if size.dagster]
    rows: list[list[object]] = []
    for size in measured:
        row: list[object] = [f"{size.count:,}"]
        for column in DAGSTER_COLUMNS:
            value = size.dagster[column]
            base = measured[0].dagster[column]
            if column == "partitions held":
                row.append(f"{value:,.0f}")
            else:
                row.append(f"{value:.2f} ({value / base:.1f}x)" if base else f"{value:.2f}")
        rows.append(row)
    return rows


def report(sizes: list[Size], artifact: Path) -> None:
    print("\nService and CLI (ms; ratio = p95 against the smallest size)")
    print(_table(["videos", "request", "p50 ms", "p95 ms", "p95 ratio"], service_rows(sizes)))
    print("\nEvery statement of each path under EXPLAIN ANALYZE (whole-table scans of the big tables)")
    print(
        _table(
            ["videos", "path", "statements", "sum ms", "slowest ms", "rows read", "Seq Scan on"],
            plan_rows(sizes),
        )
    )
    if any(size.dagster for size in sizes):
        print("\nDagster (seconds; ratio against the smallest size)")
        print(_table(["videos", *DAGSTER_COLUMNS], dagster_rows(sizes)))
    artifact.parent.mkdir(parents=True, exist_ok=True)
    artifact.write_text(json.dumps([vars(size) for size in sizes], indent=1, default=str))
    print(f"\nplans and numbers: {artifact}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated video counts")
    parser.add_argument("--million", action="store_true", help="add 1,000,000 videos to --sizes")
    parser.add_argument(
        "--dagster-max", type=int, default=1_000_000, help="largest size with the Dagster part"
    )
    parser.add_argument(
        "--working-set",
        type=int,
        default=Settings.from_env({}).partition_working_set,
        help="VIDEOQA_PARTITION_WORKING_SET of the run; 0 = every video is a partition (the old design)",
    )
    parser.add_argument("--repeats", type=int, default=40, help="requests per latency figure")
    parser.add_argument("--artifact", type=Path, default=REPO / "test-artifacts" / "bench-scale.json")
    args = parser.parse_args()
    counts = sorted(
        {int(s) for s in args.sizes.split(",") if s.strip()} | ({1_000_000} if args.million else set())
    )
    from videoqa_pipeline.ai import AIConfig, get_embedder

    home = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    source = home / "clip.mp4"
    source.write_bytes(b"\0" * 1024)  # the job sensor checks that a local source exists, not what it holds
    settings_env = {
        "VIDEOQA_HOME": str(home),
        "LOG_LEVEL": "WARNING",
        "VIDEOQA_JOBS_PER_TICK": str(SENSOR_JOBS),
        "VIDEOQA_MAX_QUEUED_RUNS": "10000",
        "JOB_SOURCE_TYPE": "postgres",
        "WORKER_POLL_MS": "1000",
        "VIDEOQA_PARTITION_WORKING_SET": str(args.working_set),
    }
    try:
        admin_url = embedded_database_url(home)
        url = scratch_database(admin_url, "bench_videoqa")
        db = Database(DatabaseSettings(url=url, home=home, pool_size=3, timeout_seconds=600))
        db.ensure_schema()
        model = get_embedder(AIConfig.from_env({})).model_name
        env = Environment(
            admin_url,
            url,
            home,
            source,
            model,
            invented_words(VOCABULARY),
            db,
            {**settings_env, "DATABASE_URL": url},
            args.working_set,
        )
        sizes = [measure_size(env, count, args.repeats, count <= args.dagster_max) for count in counts]
        db.close()
        report(sizes, args.artifact)
    finally:
        release_embedded_database(home)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

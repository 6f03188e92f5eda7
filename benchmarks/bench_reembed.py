"""Re-embedding a library: one run for the whole set (``reembed_videos``) against one run per video.

Run from the repository root::

    python -m benchmarks.bench_reembed                # 200 videos
    python -m benchmarks.bench_reembed --videos 1000

Builds N processed videos in the embedded PostgreSQL (a ledger job, three transcript segments,
three scenes and three keyframe texts each, and vectors of an older model), then times, with the
offline embedder:

* **one run** (the baseline): ``reembed_videos`` over every video, as ``videoqa reprocess --from
  embeddings --in-one-run`` runs it;
* **one run per video, in this process**: the ``embeddings`` asset of ``video_pipeline`` for one
  partition at a time (what ``reprocess_videos`` queues), without the cost of starting a run
  process: the lower bound of that path;
* **one run per video, a fresh process each** (``dagster asset materialize``, as the default run
  launcher starts every run): a few videos, the time per video extrapolated.

Talks to Unix sockets and local processes only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg

from videoqa_pipeline.definitions import VIDEO_PIPELINE_JOB, build_definitions
from videoqa_pipeline.defs.partitions import VIDEOS_PARTITIONS_NAME
from videoqa_pipeline.runner import reembed_in_one_run
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.embedded import embedded_database_url, release_embedded_database
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import replace_partition
from videoqa_pipeline_tests.pipeline.dagster_dev_server import NON_DEFAULT_SETTINGS
from videoqa_pipeline_tests.storage.conftest import create_scratch_database

REPO = Path(__file__).resolve().parents[1]
SENTENCES = (
    "The harbour master counts the ships that enter before noon.",
    "A lighthouse keeper explains how the lamp turns every ten seconds.",
    "Storms in winter close the port for three days at a time.",
)


def video_name(number: int) -> str:
    return f"v{number:06d}"


def build_library(database: Database, count: int) -> None:
    """``count`` processed videos with their tables and vectors of an older model."""
    transcript = pd.DataFrame(
        [
            {
                "segment_index": i,
                "start_seconds": 4.0 * i,
                "end_seconds": 4.0 * i + 4,
                "text": text,
                "words": None,
                "language": "en",
                "model": "base",
            }
            for i, text in enumerate(SENTENCES)
        ]
    )
    scenes = pd.DataFrame(
        [
            {
                "scene_index": i,
                "start_seconds": 4.0 * i,
                "end_seconds": 4.0 * i + 4,
                "start_frame": 100 * i,
                "end_frame": 100 * i + 99,
            }
            for i in range(3)
        ]
    )
    frames = pd.DataFrame(
        [
            {
                "scene_index": i,
                "timestamp_seconds": 4.0 * i + 1,
                "caption": None,
                "labels": None,
                "ocr_text": f"PIER {i}",
                "model": "ocr",
            }
            for i in range(3)
        ]
    )
    with database.connection() as conn:
        conn.execute(
            """INSERT INTO videoqa_jobs (video_id, source_uri, status, finished_at)
               SELECT 'v' || lpad(g::text, 6, '0'), 's3://bench/' || g || '.mp4', 'succeeded', now()
               FROM generate_series(0, %s - 1) AS g""",
            (count,),
        )
        conn.execute(
            """INSERT INTO videoqa_embeddings (video_id, item_index, kind, start_seconds, end_seconds, text, model,
                                               dimension, embedding)
               SELECT 'v' || lpad(g::text, 6, '0'), 0, 'transcript', 0, 4, 'old', 'older-model', 3, '[1,0,0]'
               FROM generate_series(0, %s - 1) AS g""",
            (count,),
        )
    for number in range(count):
        for table, frame in (("transcript", transcript), ("scenes", scenes), ("frame_analyses", frames)):
            replace_partition(database, TABLES[table], video_name(number), frame)


def one_run(settings: Settings, count: int) -> float:
    with dg.DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        success, _run_id, error = reembed_in_one_run(
            {"every_video": True}, settings=settings, instance=instance
        )
        elapsed = time.perf_counter() - started
    if not success:
        raise RuntimeError(f"reembed_videos failed: {error}")
    return elapsed / count


def run_per_video_in_process(settings: Settings, videos: list[str]) -> float:
    job = build_definitions(settings, secrets_as_env_vars=False).resolve_job_def(VIDEO_PIPELINE_JOB)
    subset = job.get_subset(asset_selection={dg.AssetKey("embeddings")})
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITIONS_NAME, videos)
        started = time.perf_counter()
        for video in videos:
            result = subset.execute_in_process(partition_key=video, instance=instance, raise_on_error=False)
            if not result.success:
                raise RuntimeError(f"the embeddings run of {video} failed")
        return (time.perf_counter() - started) / len(videos)


def run_per_video_fresh_process(env: dict[str, str], dagster_home: Path, videos: list[str]) -> float:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITIONS_NAME, videos)
    started = time.perf_counter()
    for video in videos:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dagster",
                "asset",
                "materialize",
                "-m",
                "videoqa_pipeline.definitions",
                "--select",
                "embeddings",
                "--partition",
                video,
            ],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return (time.perf_counter() - started) / len(videos)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=200, help="videos re-embedded in one run")
    parser.add_argument("--per-video", type=int, default=20, help="videos run one at a time, in this process")
    parser.add_argument("--fresh", type=int, default=3, help="videos run one at a time, a fresh process each")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-reembed-"))
    try:
        url = create_scratch_database(embedded_database_url(home))
        info = psycopg.conninfo.conninfo_to_dict(url)
        database_url = (
            f"postgresql://{info['user']}@/{info['dbname']}?host={info['host']}&port={info['port']}"
        )
        env = {key: value for key, value in os.environ.items() if key not in NON_DEFAULT_SETTINGS}
        env.update({"VIDEOQA_HOME": str(home), "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"})
        settings = Settings.from_env(env).validate()
        database = Database(DatabaseSettings(url=url, home=home, pool_size=3, timeout_seconds=60))
        database.ensure_schema()
        started = time.perf_counter()
        build_library(database, args.videos)
        print(f"{args.videos} videos built in {time.perf_counter() - started:.1f} s", flush=True)

        baseline = one_run(settings, args.videos)
        per_video = run_per_video_in_process(settings, [video_name(n) for n in range(args.per_video)])
        dagster_home = home / "dagster"
        dagster_home.mkdir()
        fresh_env = {**env, "DAGSTER_HOME": str(dagster_home), "PYTHONPATH": str(REPO)}
        fresh = run_per_video_fresh_process(
            fresh_env, dagster_home, [video_name(n) for n in range(args.fresh)]
        )
        database.close()
    finally:
        release_embedded_database(home)
        shutil.rmtree(home, ignore_errors=True)

    print("\n| path | seconds per video | ratio | 1,000,000 videos |")
    print("|---|---|---|---|")
    for name, seconds in (
        (f"one run for {args.videos} videos (reembed_videos)", baseline),
        (f"one run per video, in this process ({args.per_video} videos)", per_video),
        (f"one run per video, a fresh process each ({args.fresh} videos)", fresh),
    ):
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.1f}x | {seconds * 1e6 / 3600:,.0f} h |")


if __name__ == "__main__":
    main()

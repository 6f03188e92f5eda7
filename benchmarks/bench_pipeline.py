"""End-to-end throughput and orchestration overhead of the video pipeline on this machine.

Run: ``python benchmarks/bench_pipeline.py [--videos 10] [--seconds 30] [--executor-videos 2]``
(or ``python -m benchmarks.bench_pipeline``).

Generated videos (five or six scenes, real speech when espeak-ng is installed) go through the
pipeline in several ways, all in the same run and on the same embedded PostgreSQL and blob store:

* **direct**: the stage functions the assets call (:mod:`videoqa_pipeline.steps`), in the same
  order, in one process, each followed by the ``replace_partition`` table write the IO manager
  makes: the baseline, so the overhead is measured against the real pipeline. Each AI stage frees
  its model when it is done (as in a run worker) and loads it again for the next video.
* **dagster in-process**: :func:`videoqa_pipeline.runner.process_video` (``dg.materialize``,
  the project's in-process executor, an on-disk instance with the repo's ``dagster.yaml``).
  Direct and Dagster runs alternate video by video so that drift in machine load hits both.
* on the first ``--executor-videos`` videos, the choices of executor and launcher:
  ``execute_job`` of the ``video_pipeline`` job with ``in_process_executor`` and with
  ``multiprocess_executor`` (a process per step), and a run started the way ``dagster dev``'s
  run launcher starts one: ``dagster job execute`` in a fresh process, which also pays Python
  start-up, imports and model loading for every run.

**Orchestration overhead per video** = median wall time per video of a mode minus the median
direct time (the generated videos are alike). The target is at most 1.5 s per video for the mode
the project uses.

``--long-video [MINUTES ...]`` measures something else: a fresh run worker (``videoqa process``)
on real footage with real speech (:mod:`benchmarks.media_fixtures`), per-stage time and peak RSS,
against the worker without its memory bounds in the same run (:mod:`benchmarks.run_worker_memory`).

Prints per-stage mean seconds, median wall time, videos/hour, overhead and ratios against direct,
and peak RSS. Run logs go to a file (``--log``), not the console. The embedded PostgreSQL server is a separate process and is not in the RSS figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/bench_pipeline.py` from a checkout
    sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402

from videoqa_pipeline import media, steps  # noqa: E402
from videoqa_pipeline.ai import AIConfig, get_embedder, get_frame_analyzer, get_transcriber  # noqa: E402
from videoqa_pipeline.definitions import VIDEO_PIPELINE_JOB, build_definitions  # noqa: E402
from videoqa_pipeline.defs.config import PipelineConfig  # noqa: E402
from videoqa_pipeline.defs.partitions import videos_partitions  # noqa: E402
from videoqa_pipeline.run_tags import SOURCE_URI_TAG  # noqa: E402
from videoqa_pipeline.runner import process_video  # noqa: E402
from videoqa_pipeline.settings import Settings  # noqa: E402
from videoqa_pipeline.steps import ProcessingOptions  # noqa: E402
from videoqa_pipeline.storage.blobs import BlobStore, LocalBlobStore  # noqa: E402
from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database  # noqa: E402
from videoqa_pipeline.storage.embedded import release_embedded_database  # noqa: E402
from videoqa_pipeline.storage.schema import TABLES  # noqa: E402
from videoqa_pipeline.storage.tables import replace_partition  # noqa: E402
from videoqa_pipeline_tests.pipeline.dagster_dev_server import NON_DEFAULT_SETTINGS  # noqa: E402

logger = logging.getLogger("bench_pipeline")

STAGES = tuple(TABLES)  # one table per stage, in pipeline order
TARGET_OVERHEAD_SECONDS = 1.5
CLI_PEAK_RSS_MB: list[float] = []
SPEECH = (
    "Welcome to the quarterly review. Revenue grew in every region this year. "
    "The new warehouse in Lyon opens in March. Customer support answered most tickets within a day. "
    "The design team shipped the mobile app redesign. Next quarter we focus on search and reliability. "
    "Thank you all for the hard work and see you at the offsite."
)


# --- jobs for reconstructable(): module-level factories, rebuilt from the environment in each process ---


def _pipeline_job(executor: dg.ExecutorDefinition, name: str) -> dg.JobDefinition:
    base = build_definitions(Settings.from_env(os.environ).validate())
    job = dg.define_asset_job(name, selection=dg.AssetSelection.all(), executor_def=executor)
    definitions = dg.Definitions(assets=base.assets, jobs=[job], resources=base.resources)
    return definitions.resolve_job_def(name)


def video_pipeline_in_process_job() -> dg.JobDefinition:
    """The pipeline job with the in-process executor (the project's choice)."""
    return _pipeline_job(dg.in_process_executor, "video_pipeline_in_process")


def video_pipeline_multiprocess_job() -> dg.JobDefinition:
    """The pipeline job with Dagster's default multiprocess executor (a process per step)."""
    return _pipeline_job(dg.multiprocess_executor, "video_pipeline_multiprocess")


# --- measurements ---


@dataclass
class Measurement:
    """One video through one mode."""

    mode: str
    video_index: int
    wall_seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    error: str | None = None


@contextmanager
def _timed(into: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        into[stage] = into.get(stage, 0.0) + time.perf_counter() - started


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """High-water resident memory of this process (or of its largest waited-for child), in MB."""
    return resource.getrusage(who).ru_maxrss / 1024


def process_direct(
    video_id: str, path: Path, store: BlobStore, database: Database, ai: AIConfig, options: ProcessingOptions
) -> dict[str, float]:
    """Every stage as the assets run it: the same :mod:`videoqa_pipeline.steps` functions, in
    pipeline order, each followed by the ``replace_partition`` write the IO manager makes.

    Upstream tables are handed on in memory (the assets read them back through the IO manager,
    which counts as orchestration).

    Returns:
        Seconds per stage, including its blob and table writes.
    """
    seconds: dict[str, float] = {}
    tables: dict[str, pd.DataFrame] = {}
    stages: list[tuple[str, Callable[[], steps.StageResult]]] = [
        ("source_video", lambda: steps.ingest_source(str(path), video_id, store)),
        ("normalized_video", lambda: steps.normalize_video(tables["source_video"], video_id, store, options)),
        (
            "transcript",
            lambda: steps.transcribe_audio(
                tables["normalized_video"], video_id, store, partial(get_transcriber, ai), options
            ),
        ),
        ("scenes", lambda: steps.detect_video_scenes(tables["normalized_video"], video_id, store, options)),
        (
            "keyframes",
            lambda: steps.extract_video_keyframes(
                tables["scenes"], tables["normalized_video"], video_id, store, options
            ),
        ),
        (
            "frame_analyses",
            lambda: steps.analyze_keyframes(
                tables["keyframes"], video_id, store, partial(get_frame_analyzer, ai), options
            ),
        ),
        (
            "embeddings",
            lambda: steps.embed_video(
                tables["transcript"],
                tables["scenes"],
                tables["frame_analyses"],
                partial(get_embedder, ai),
                options,
            ),
        ),
    ]
    for stage, run in stages:
        with _timed(seconds, stage):
            frame = run().frame()
            replace_partition(database, TABLES[stage], video_id, frame)
        tables[stage] = frame
    return seconds


def make_videos(folder: Path, count: int, seconds: float) -> list[media.SampleVideo]:
    """``count`` videos of about ``seconds`` each: six scenes (five below 12 s), speech when possible."""
    scene_count = 6 if seconds >= 12 else 5
    videos = []
    for index in range(count):
        # Slightly different scene lengths per video so no two files are identical.
        lengths = [seconds / scene_count * (1.0 + 0.1 * (((index + s) % 3) - 1)) for s in range(scene_count)]
        lengths[-1] = max(1.0, seconds - sum(lengths[:-1]))
        texts = [f"REPORT {index + 1} PAGE {s + 1}" if s % 2 == 0 else None for s in range(scene_count)]
        videos.append(
            media.make_sample_video(
                folder / f"video-{index:02d}.mp4",
                scene_seconds=lengths,
                speech=SPEECH,
                scene_texts=texts,
                width=1280,
                height=720,
                preset="ultrafast",
            )
        )
    return videos


def run_dagster_in_process(
    video_id: str, path: Path, settings: Settings, instance: dg.DagsterInstance
) -> Measurement:
    started = time.perf_counter()
    report = process_video(str(path), settings=settings, video_id=video_id, instance=instance)
    wall = time.perf_counter() - started
    return Measurement(
        "dagster in-process",
        -1,
        wall,
        {step.name: step.seconds for step in report.steps},
        report.success,
        report.error,
    )


def run_execute_job(
    factory: Callable[[], dg.JobDefinition], video_id: str, path: Path, instance: dg.DagsterInstance
) -> tuple[float, bool, str | None]:
    instance.add_dynamic_partitions(videos_partitions.name or "videos", [video_id])
    started = time.perf_counter()
    result = dg.execute_job(
        dg.reconstructable(factory),
        instance=instance,
        tags={"dagster/partition": video_id, SOURCE_URI_TAG: str(path)},
    )
    wall = time.perf_counter() - started
    error = None if result.success else f"run {result.run_id} failed"
    return wall, result.success, error


def run_cli_subprocess(
    video_id: str, path: Path, instance: dg.DagsterInstance, log_path: Path
) -> tuple[float, bool, str | None]:
    """A fresh run worker process, as dagster dev's DefaultRunLauncher starts one per run."""
    instance.add_dynamic_partitions(videos_partitions.name or "videos", [video_id])
    tags = json.dumps({"dagster/partition": video_id, SOURCE_URI_TAG: str(path)})
    command = [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "execute",
        "-m",
        "videoqa_pipeline.definitions",
        "-j",
        VIDEO_PIPELINE_JOB,
        "--tags",
        tags,
    ]
    started = time.perf_counter()
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        # Sampled, because ru_maxrss of a forked child starts from the parent's high-water mark.
        peak = 0
        watched = psutil.Process(process.pid)
        while process.poll() is None:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, watched.memory_info().rss)
            time.sleep(0.05)
    wall = time.perf_counter() - started
    CLI_PEAK_RSS_MB.append(peak / 2**20)
    ok = process.returncode == 0
    return wall, ok, None if ok else f"exit code {process.returncode}, see {log_path}"


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN prints as "-"


def _print_stage_table(measurements: list[Measurement]) -> None:
    """Per-stage means of direct and Dagster in-process runs, and the time spent outside steps."""
    print()
    print("Per-stage mean seconds (Dagster step time includes its IO manager reads and writes)")
    header = f"{'stage':<18}{'direct':>10}{'dagster in-process':>20}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    direct_runs = [m for m in measurements if m.mode == "direct" and m.ok]
    dagster_runs = [m for m in measurements if m.mode == "dagster in-process" and m.ok]
    direct_stage = {s: _mean([m.stage_seconds.get(s, 0.0) for m in direct_runs]) for s in STAGES}
    dagster_stage = {s: _mean([m.stage_seconds.get(s, 0.0) for m in dagster_runs]) for s in STAGES}
    for stage in STAGES:
        ratio = dagster_stage[stage] / direct_stage[stage] if direct_stage[stage] else float("nan")
        print(f"{stage:<18}{_fmt(direct_stage[stage]):>10}{_fmt(dagster_stage[stage]):>20}{_fmt(ratio):>8}")
    direct_sum = sum(direct_stage.values())
    dagster_sum = sum(dagster_stage.values())
    print(
        f"{'sum of stages':<18}{_fmt(direct_sum):>10}{_fmt(dagster_sum):>20}{_fmt(dagster_sum / direct_sum):>8}"
    )
    dagster_wall = _mean([m.wall_seconds for m in dagster_runs])
    direct_wall = _mean([m.wall_seconds for m in direct_runs])
    print(f"{'run wall time':<18}{_fmt(direct_wall):>10}{_fmt(dagster_wall):>20}")
    print(
        f"{'outside steps':<18}{'':>10}{_fmt(dagster_wall - dagster_sum):>20}   (run start/finish, events, definitions)"
    )


def _print_mode_table(measurements: list[Measurement]) -> None:
    """Median wall time per video of every mode, and its overhead over the direct median."""
    # The generated videos are alike (same length, scenes and speech), so every mode is compared
    # with the median direct time over all of them; medians keep a stray slow run (another
    # process waking up on this 2-core machine) from deciding the result.
    direct = [m.wall_seconds for m in measurements if m.mode == "direct" and m.ok]
    direct_median = statistics.median(direct) if direct else float("nan")
    print()
    print(
        f"Modes (median wall time per video; overhead = that minus the direct median of {direct_median:.2f} s; "
        f"target <= {TARGET_OVERHEAD_SECONDS} s)"
    )
    header = f"{'mode':<40}{'videos':>7}{'wall s/video':>14}{'overhead s':>12}{'x direct':>10}{'videos/hour':>13}{'failed':>8}"
    print(header)
    print("-" * len(header))
    overheads: dict[str, float] = {}
    for mode in dict.fromkeys(m.mode for m in measurements):  # in the order they ran
        runs = [m for m in measurements if m.mode == mode]
        good = [m for m in runs if m.ok]
        wall = statistics.median([m.wall_seconds for m in good]) if good else float("nan")
        overheads[mode] = wall - direct_median
        per_hour = 3600 / wall if wall == wall and wall > 0 else float("nan")
        print(
            f"{mode:<40}{len(good):>7}{_fmt(wall):>14}{_fmt(overheads[mode]):>12}{_fmt(wall / direct_median):>10}"
            f"{_fmt(per_hour, 0):>13}{len(runs) - len(good):>8}"
        )
    if "dagster in-process" in overheads:
        overhead = overheads["dagster in-process"]
        verdict = "meets" if overhead <= TARGET_OVERHEAD_SECONDS else "MISSES"
        print(
            f"\nDagster in-process overhead {overhead:.2f} s/video {verdict} the {TARGET_OVERHEAD_SECONDS} s target."
        )


def print_tables(
    measurements: list[Measurement],
    videos: list[media.SampleVideo],
    rss: dict[str, float],
    setup: dict[str, Any],
) -> None:
    print()
    print(
        f"Videos: {len(videos)} x {_mean([v.duration for v in videos]):.1f} s "
        f"(1280x720, {len(videos[0].cut_times) + 1} scenes, speech: {'yes' if videos[0].speech_text else 'no'}); "
        f"cores: {os.cpu_count()}; models warmed once before timing"
    )
    for key, value in setup.items():
        print(f"  {key}: {value}")
    _print_stage_table(measurements)
    _print_mode_table(measurements)
    print()
    print("Peak RSS (MB)")
    for label, value in rss.items():
        print(f"  {label:<52}{value:>8.0f}")
    for m in measurements:
        if not m.ok:
            print(f"FAILED {m.mode} video {m.video_index}: {m.error}")


@dataclass
class Bench:
    """What every mode runs against: one home (embedded PostgreSQL, blobs), one Dagster instance."""

    work: Path
    settings: Settings
    database: Database
    store: BlobStore
    options: ProcessingOptions
    instance: dg.DagsterInstance

    def direct(self, index: int | str, path: Path) -> Measurement:
        """One video through the stage functions, timed; a failure is recorded, not raised."""
        began = time.perf_counter()
        try:
            stages = process_direct(
                f"direct-{index}", path, self.store, self.database, self.settings.ai, self.options
            )
            return Measurement("direct", -1, time.perf_counter() - began, stages)
        except Exception as error:
            return Measurement("direct", -1, time.perf_counter() - began, {}, False, str(error))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=10, help="videos for direct vs dagster in-process")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each generated video")
    parser.add_argument(
        "--executor-videos", type=int, default=2, help="videos for the executor/launcher comparison"
    )
    parser.add_argument(
        "--max-frames", type=int, default=50, help="max_frames_per_video (default as shipped)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep everything here instead of a temp dir"
    )
    parser.add_argument(
        "--log", type=Path, default=None, help="run logs (default: bench_pipeline.log in the work dir)"
    )
    parser.add_argument(
        "--long-video",
        type=float,
        nargs="*",
        default=None,
        metavar="MINUTES",
        help="instead: per-stage time and peak RSS of a fresh run worker (videoqa process) on real "
        "footage with real speech (default 5 minutes), each length twice, against the unbounded worker",
    )
    return parser.parse_args(argv)


def _open_bench(args: argparse.Namespace, work: Path) -> Bench:
    """Send logs to a file, set the environment every process of every mode shares, open storage."""
    # Run logs (Dagster's console logger, library logs, children's output) go to a file so the
    # console keeps only progress and tables; every mode pays the same cost for writing them.
    log_path = args.log or work / "bench_pipeline.log"
    log_file = log_path.open("ab")
    os.dup2(log_file.fileno(), sys.stderr.fileno())
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(f"Logs: {log_path}", flush=True)
    dagster_home = work / "dagster_home"
    dagster_home.mkdir(exist_ok=True)
    from videoqa_pipeline_tests.pipeline.dagster_dev_server import write_instance_yaml

    write_instance_yaml(dagster_home)
    for name in NON_DEFAULT_SETTINGS:  # the zero-setup default is what this benchmark measures
        os.environ.pop(name, None)
    # Child processes (multiprocess steps, the CLI run) inherit these.
    os.environ.update(
        {
            "VIDEOQA_HOME": str(work / "home"),
            "DAGSTER_HOME": str(dagster_home),
            "LOG_LEVEL": "WARNING",
            "MAX_FRAMES_PER_VIDEO": str(args.max_frames),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
    )
    settings = Settings.from_env(os.environ).validate()
    database = get_database(DatabaseSettings(url=None, home=settings.home))
    database.ensure_schema()
    return Bench(
        work=work,
        settings=settings,
        database=database,
        store=LocalBlobStore(settings.blob_root),
        # The run config the Dagster runs get from the same settings.
        options=ProcessingOptions.of(PipelineConfig.from_settings(settings)),
        instance=dg.DagsterInstance.from_config(str(dagster_home)),
    )


def _warm_up(bench: Bench, setup: dict[str, Any]) -> None:
    """Load the models and run Dagster once, so no timed run pays for either."""
    print("Warming up (model loading, first Dagster run) ...", flush=True)
    warm = media.make_sample_video(
        bench.work / "videos" / "warmup.mp4", scene_seconds=(2.0, 2.0), speech="Warm up."
    )
    warm_direct = bench.direct("warmup", warm.path)
    setup["direct warm-up (loads models)"] = f"{warm_direct.wall_seconds:.1f} s, success={warm_direct.ok}"
    started = time.perf_counter()
    report = process_video(
        str(warm.path), settings=bench.settings, video_id="warmup-dagster", instance=bench.instance
    )
    setup["dagster warm-up (first run)"] = f"{time.perf_counter() - started:.1f} s, success={report.success}"


def _measure_direct_and_in_process(bench: Bench, videos: Sequence[media.SampleVideo]) -> list[Measurement]:
    """Direct and Dagster in-process runs, alternating video by video so load drift hits both."""
    measurements: list[Measurement] = []
    for index, video in enumerate(videos):
        for mode in ("direct", "dagster in-process") if index % 2 == 0 else ("dagster in-process", "direct"):
            if mode == "direct":
                measurement = bench.direct(index, video.path)
            else:
                measurement = run_dagster_in_process(
                    f"dagster-{index}", video.path, bench.settings, bench.instance
                )
            measurement.video_index = index
            measurements.append(measurement)
            print(
                f"  video {index:2d} {mode:<20} {measurement.wall_seconds:6.2f} s "
                f"{'ok' if measurement.ok else measurement.error}",
                flush=True,
            )
    return measurements


def _measure_executors(bench: Bench, videos: Sequence[media.SampleVideo]) -> list[Measurement]:
    """``execute_job`` with each executor, and a fresh run process as dagster dev launches one."""
    instance = bench.instance
    alternatives: list[tuple[str, Callable[[int, Path], tuple[float, bool, str | None]]]] = [
        (
            "execute_job, in_process_executor",
            lambda i, p: run_execute_job(video_pipeline_in_process_job, f"inproc-{i}", p, instance),
        ),
        (
            "execute_job, multiprocess_executor",
            lambda i, p: run_execute_job(video_pipeline_multiprocess_job, f"multi-{i}", p, instance),
        ),
        (
            "fresh run process (dagster job execute)",
            lambda i, p: run_cli_subprocess(f"cli-{i}", p, instance, bench.work / "cli-runs.log"),
        ),
    ]
    measurements = []
    for label, run in alternatives:
        for index, video in enumerate(videos):
            wall, ok, problem = run(index, video.path)
            measurements.append(Measurement(label, index, wall, {}, ok, problem))
            print(f"  video {index:2d} {label:<40} {wall:6.2f} s {'ok' if ok else problem}", flush=True)
    return measurements


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="videoqa-bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.long_video is not None:
        from benchmarks import run_worker_memory

        runs = run_worker_memory.measure(args.long_video or [5.0], 2, work, baseline=True)
        run_worker_memory.print_runs(runs)
        return 0 if all(run.ok for run in runs) else 1
    bench = _open_bench(args, work)
    started = time.perf_counter()
    print(f"Generating {args.videos} videos of {args.seconds:.0f} s in {work} ...", flush=True)
    videos = make_videos(work / "videos", max(args.videos, args.executor_videos), args.seconds)
    setup: dict[str, Any] = {"video generation": f"{time.perf_counter() - started:.1f} s"}
    _warm_up(bench, setup)
    rss = {"this process after warm-up": peak_rss_mb()}

    measurements = _measure_direct_and_in_process(bench, videos[: args.videos])
    rss["this process after direct + in-process runs"] = peak_rss_mb()
    # Make sure every compared video has a direct time even when --executor-videos > --videos.
    for index in range(args.videos, args.executor_videos):
        measurements.append(bench.direct(index, videos[index].path))
        measurements[-1].video_index = index
    measurements += _measure_executors(bench, videos[: args.executor_videos])
    rss["this process at the end"] = peak_rss_mb()
    if CLI_PEAK_RSS_MB:
        rss["fresh run process (dagster job execute), sampled"] = max(CLI_PEAK_RSS_MB)

    print_tables(measurements, videos[: max(args.videos, args.executor_videos)], rss, setup)
    bench.instance.dispose()
    bench.database.close()
    release_embedded_database(bench.settings.home)  # stop the embedded server before its files go
    if args.work_dir is None and args.log is None:
        shutil.rmtree(work, ignore_errors=True)
    elif args.work_dir is None:
        shutil.rmtree(work / "home", ignore_errors=True)
    return 0 if all(m.ok for m in measurements) else 1


if __name__ == "__main__":
    sys.exit(main())

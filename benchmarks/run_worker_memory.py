"""Peak resident memory of a run worker, per stage and whole, on long real-footage videos.

``videoqa process VIDEO --json`` runs in a fresh process (as a run worker does: one video, models
loaded for it) on its own ``VIDEOQA_HOME``; this process samples the worker's resident memory
every 20 ms and reads each stage's own peak (the ``peak_rss_mb`` fact every stage reports) from
the JSON report. The embedded PostgreSQL server and ffmpeg are children of the worker and are
not counted: they are other processes.

Run alone: ``python -m benchmarks.run_worker_memory --minutes 1 5 15`` (each length twice);
``python -m benchmarks.bench_pipeline --long-video`` prints the same table for 5 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.media_fixtures import real_footage_video  # noqa: E402
from videoqa_pipeline.storage.ledger import STAGES  # noqa: E402
from videoqa_pipeline_tests.pipeline.dagster_dev_server import NON_DEFAULT_SETTINGS  # noqa: E402

#: Settings that would move the worker off the offline, zero-setup default being measured.
_CLEARED = (*NON_DEFAULT_SETTINGS, "DAGSTER_HOME")


#: The worker as it was before memory was bounded, in the same code: models kept for the whole
#: run, glibc's default allocator settings, no heap trimming, transcription windows of 10 minutes,
#: five candidates when a window falls back to sampling. The baseline of every comparison.
UNBOUNDED = (
    "import sys\n"
    "import videoqa_pipeline.ai.local_asr as asr\n"
    "import videoqa_pipeline.steps.memory as memory\n"
    "memory.BOUNDED = False\n"
    "asr.DEFAULT_WINDOW_SECONDS = 600.0\n"
    "asr.DEFAULT_BEST_OF = 5\n"
    "from videoqa_pipeline.cli import main\n"
    "sys.argv[0] = 'videoqa'\n"
    "main()\n"
)
#: Labels of the two kinds of worker.
BOUNDED_LABEL, UNBOUNDED_LABEL = "bounded", "unbounded"


@dataclass
class WorkerRun:
    """One video through one fresh ``videoqa process`` worker."""

    label: str
    minutes: float
    wall_seconds: float
    peak_rss_mb: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_peak_mb: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    error: str | None = None


def _sample_until_exit(process: subprocess.Popen[bytes]) -> float:
    """The largest resident size of ``process`` (not its children) until it exits, in MB."""
    peak = 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, watched.memory_info().rss)
        time.sleep(0.02)
    return peak / 2**20


def run_worker(
    video: Path,
    minutes: float,
    label: str,
    work: Path,
    *,
    bounded: bool = True,
    env: Mapping[str, str] | None = None,
) -> WorkerRun:
    """Process ``video`` in a fresh ``videoqa process --json`` and measure it.

    Args:
        bounded: False runs the :data:`UNBOUNDED` baseline worker.
        env: Extra environment for the worker (e.g. a setting being compared).
    """
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    environment = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    environment.update({"VIDEOQA_HOME": str(home), "LOG_LEVEL": "WARNING", **(env or {})})
    report_path = home / "report.json"
    entry = ["-m", "videoqa_pipeline.cli"] if bounded else ["-c", UNBOUNDED]
    command = [sys.executable, *entry, "process", str(video), "--json"]
    started = time.perf_counter()
    with report_path.open("wb") as out, (work / "workers.log").open("ab") as log:
        process = subprocess.Popen(command, cwd=home, stdout=out, stderr=log, env=environment)
        peak = _sample_until_exit(process)
    wall = time.perf_counter() - started
    run = WorkerRun(label, minutes, wall, peak, ok=process.returncode == 0)
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as error:
        run.ok, run.error = False, f"no report ({error}); see {work / 'workers.log'}"
        return run
    run.error = report.get("error")
    run.ok = run.ok and bool(report.get("success"))
    for name, step in report.get("steps", {}).items():
        run.stage_seconds[name] = float(step.get("seconds", 0.0))
        value = step.get("metadata", {}).get("peak_rss_mb")
        if isinstance(value, int | float):
            run.stage_peak_mb[name] = float(value)
    shutil.rmtree(home, ignore_errors=True)
    return run


def print_runs(runs: Sequence[WorkerRun]) -> None:
    """Per-stage seconds and peak RSS of every run, and the worker's peak."""
    print()
    print(
        "Run worker on real footage + real speech (videoqa process, offline defaults): seconds / peak RSS MB"
    )
    header = f"{'stage':<18}" + "".join(
        f"{r.label + ' ' + format(r.minutes, 'g') + ' min':>24}" for r in runs
    )
    print(header)
    print("-" * len(header))
    for stage in STAGES:
        cells = [
            f"{r.stage_seconds.get(stage, float('nan')):.1f} s / {r.stage_peak_mb.get(stage, float('nan')):.0f}"
            for r in runs
        ]
        print(f"{stage:<18}" + "".join(f"{cell:>24}" for cell in cells))
    print(f"{'worker wall':<18}" + "".join(f"{r.wall_seconds:>22.1f} s" for r in runs))
    print(f"{'worker peak RSS':<18}" + "".join(f"{r.peak_rss_mb:>21.0f} MB" for r in runs))
    for r in runs:
        if not r.ok:
            print(f"FAILED {r.label} {r.minutes:g} min: {r.error}")
    _print_ratios(runs)


def _print_ratios(runs: Sequence[WorkerRun]) -> None:
    """Mean peak per stage of the bounded worker over the unbounded one, length by length."""
    for minutes in dict.fromkeys(r.minutes for r in runs):
        bounded = [r for r in runs if r.minutes == minutes and r.label.startswith(BOUNDED_LABEL) and r.ok]
        baseline = [r for r in runs if r.minutes == minutes and r.label.startswith(UNBOUNDED_LABEL) and r.ok]
        if not bounded or not baseline:
            continue
        print(
            f"\n{minutes:g} min, peak RSS bounded / unbounded (mean of {len(bounded)} / {len(baseline)} runs)"
        )
        for stage in (*STAGES, "worker"):
            mine = _mean_peak(bounded, stage)
            theirs = _mean_peak(baseline, stage)
            print(f"  {stage:<18}{mine:>7.0f} MB / {theirs:>5.0f} MB = {mine / theirs:.2f}")


def _mean_peak(runs: Sequence[WorkerRun], stage: str) -> float:
    values = [r.peak_rss_mb if stage == "worker" else r.stage_peak_mb.get(stage, float("nan")) for r in runs]
    return sum(values) / len(values)


def measure(minutes_list: Sequence[float], repeat: int, work: Path, *, baseline: bool) -> list[WorkerRun]:
    """Every length ``repeat`` times; with ``baseline``, the unbounded worker alternates with the
    bounded one, so drift in the machine's load hits both."""
    kinds = [True, False] if baseline else [True]
    runs = []
    for minutes in minutes_list:
        video = real_footage_video(minutes)
        for attempt in range(repeat):
            for bounded in kinds if attempt % 2 == 0 else kinds[::-1]:
                label = f"{BOUNDED_LABEL if bounded else UNBOUNDED_LABEL} #{attempt + 1}"
                run = run_worker(video, minutes, label, work, bounded=bounded)
                print(f"  {minutes:g} min {label}: {run.wall_seconds:.1f} s, peak {run.peak_rss_mb:.0f} MB "
                      f"{'ok' if run.ok else run.error}", flush=True)  # fmt: skip
                runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0])
    parser.add_argument("--repeat", type=int, default=2, help="runs per length (the machine is shared)")
    parser.add_argument(
        "--baseline", action="store_true", help="also run the unbounded worker (the baseline) on each length"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="videoqa-worker-memory-"))
    runs = measure(args.minutes, args.repeat, work, baseline=args.baseline)
    print_runs(runs)
    print(f"\nLogs: {work / 'workers.log'}")
    return 0 if all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Media core benchmark: probe, normalize, scenes and keyframes against a plain ffmpeg decode.

    python -m benchmarks.bench_media                # 10-minute 1080p30 video (+ 1-minute for RSS)
    python -m benchmarks.bench_media --minutes 2    # quicker

Every step runs in its own child process so wall time and peak RSS (sampled with psutil,
ffmpeg children included) belong to that step alone. The baseline, ``ffmpeg -i SRC -f null -``
(a full decode of the same file), is measured in the same run, and each step is reported as
a ratio to it. Each measurement is the best of ``--repeat`` runs, because other work on the
machine only ever makes a run slower. Scene accuracy (precision and recall with a 0.25 s
tolerance) is measured per detector on generated videos with known cuts.

Generated videos are cached under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"
TOLERANCE = 0.25
KEYFRAMES = 50


def scene_lengths(total_seconds: float, seed: int, low: float, high: float) -> list[float]:
    rng = random.Random(seed)
    lengths: list[float] = []
    while sum(lengths) < total_seconds - high:
        lengths.append(round(rng.uniform(low, high), 1))
    lengths.append(round(total_seconds - sum(lengths), 1))
    return lengths


def make_video(
    minutes: float, width: int = 1920, height: int = 1080, fps: int = 30
) -> tuple[Path, list[float]]:
    from videoqa_pipeline.media import make_sample_video

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench_{minutes:g}min_{height}p{fps}.mp4"
    lengths = scene_lengths(minutes * 60, seed=7, low=4.0, high=20.0)
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())["cuts"]
    print(f"generating {path.name} ({len(lengths)} scenes) ...", file=sys.stderr, flush=True)
    sample = make_sample_video(
        path, scene_seconds=lengths, width=width, height=height, fps=fps, preset="veryfast", crf=23
    )
    meta.write_text(json.dumps({"cuts": sample.cut_times}))
    return path, sample.cut_times


def measure(command: list[str], repeat: int) -> tuple[float, float]:
    """Best wall time (s) and the peak RSS (MB) of a command and its children."""
    best_time, peak = math.inf, 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        process = psutil.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        run_peak = 0
        while process.poll() is None:
            try:
                procs = [process, *process.children(recursive=True)]
                run_peak = max(run_peak, sum(p.memory_info().rss for p in procs))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        if process.returncode != 0:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
        best_time = min(best_time, elapsed)
        peak = max(peak, run_peak / 2**20)
    return best_time, peak


def step_command(step: str, path: Path, cuts: list[float], out_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.bench_media",
        "--run-step",
        step,
        "--path",
        str(path),
        "--cuts",
        json.dumps(cuts),
        "--out-dir",
        str(out_dir),
    ]


def run_step(step: str, path: Path, cuts: list[float], out_dir: Path) -> None:
    """Executed in the child process."""
    from videoqa_pipeline import media

    info = media.probe(path)
    if step == "probe":
        return
    if step.startswith("normalize"):
        preset = step.split(":", 1)[1] if ":" in step else "veryfast"
        media.normalize(path, out_dir, 720, info=info, preset=preset)
        return
    if step.startswith("scenes:"):
        media.detect_scenes(path, detector=step.split(":", 1)[1], info=info)
        return
    if step.startswith("keyframes:"):
        mode = step.split(":", 1)[1]
        scenes = media.scenes_from_cuts(cuts, info.duration, info.video.fps if info.video else 30.0)
        times = media.keyframe_timestamps(scenes, media.select_scene_indices(len(scenes), KEYFRAMES))
        media.extract_keyframes(
            path,
            times,
            pick_sharpest=mode != "seek-exact",
            seek_threshold_seconds=math.inf if mode == "scan" else 2.0,
        )
        return
    raise ValueError(step)


def accuracy(detector: str, videos: list[tuple[Path, list[float]]]) -> tuple[float, float]:
    from videoqa_pipeline.media import detect_scenes

    true_pos = found_total = expected_total = 0
    for path, cuts in videos:
        found = [s.start_seconds for s in detect_scenes(path, detector=detector)[1:]]
        unmatched = list(cuts)
        for cut in found:
            match = next((c for c in unmatched if abs(c - cut) <= TOLERANCE), None)
            if match is not None:
                unmatched.remove(match)
                true_pos += 1
        found_total += len(found)
        expected_total += len(cuts)
    precision = true_pos / found_total if found_total else 1.0
    recall = true_pos / expected_total if expected_total else 1.0
    return precision, recall


def main() -> int:
    parser = argparse.ArgumentParser(description="media core benchmark")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the long video")
    parser.add_argument("--short-minutes", type=float, default=1.0, help="length of the short video (RSS)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement (best is kept)")
    parser.add_argument(
        "--normalize-presets", default="veryfast,ultrafast", help="x264 presets to measure (comma-separated)"
    )
    parser.add_argument("--run-step", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--cuts", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_step:
        run_step(args.run_step, Path(args.path), json.loads(args.cuts), Path(args.out_dir))
        return 0

    from videoqa_pipeline.media import ffmpeg_executable, make_sample_video

    ffmpeg = ffmpeg_executable()
    long_video, long_cuts = make_video(args.minutes)
    short_video, short_cuts = make_video(args.short_minutes)
    steps = [
        "probe",
        *[f"normalize:{preset}" for preset in args.normalize_presets.split(",") if preset],
        "scenes:adaptive",
        "scenes:content",
        "keyframes:seek",
        "keyframes:seek-exact",
        "keyframes:scan",
    ]
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        for label, (video, cuts) in {
            "long": (long_video, long_cuts),
            "short": (short_video, short_cuts),
        }.items():
            plain_ffmpeg = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(video)]
            rows.setdefault("ffmpeg decode (baseline)", {})[label] = measure(
                [*plain_ffmpeg, "-f", "null", "-"], args.repeat
            )
            # What any 720p normalize must do before encoding a single frame: its lower bound.
            rows.setdefault("ffmpeg decode + 720p scale", {})[label] = measure(
                [*plain_ffmpeg, "-vf", "scale=-2:720:flags=bicubic", "-f", "null", "-"], args.repeat
            )
            for step in steps:
                command = step_command(step, video, cuts, Path(tmp) / label)
                rows.setdefault(step, {})[label] = measure(command, args.repeat)
                print(f"  {label:5} {step:22} {rows[step][label][0]:8.2f} s", file=sys.stderr, flush=True)

    base_long = rows["ffmpeg decode (baseline)"]["long"][0]
    print(
        f"\nLong video: {long_video.name} ({args.minutes:g} min, {len(long_cuts)} cuts, 1920x1080 @ 30 fps)"
    )
    print(f"Short video: {short_video.name} ({args.short_minutes:g} min)")
    header = f"{'step':26} {'time long (s)':>13} {'x decode':>9} {'RSS long (MB)':>14} {'RSS short (MB)':>15}"
    print(header)
    print("-" * len(header))
    for step, by_video in rows.items():
        t_long, rss_long = by_video["long"]
        _, rss_short = by_video["short"]
        print(f"{step:26} {t_long:13.2f} {t_long / base_long:9.2f} {rss_long:14.0f} {rss_short:15.0f}")
    combined = rows["scenes:adaptive"]["long"][0] + rows["keyframes:seek"]["long"][0]
    print(f"{'scenes:adaptive + keyframes:seek':26} {combined:13.2f} {combined / base_long:9.2f}")
    print("(probe/scenes/keyframes include ~0.3 s of Python start-up and imports per child process)")

    print(f"\nScene accuracy (tolerance {TOLERANCE} s) on generated cut videos:")
    accuracy_videos = []
    with tempfile.TemporaryDirectory(prefix="bench-accuracy-") as tmp:
        for seed, (low, high) in enumerate([(1.0, 4.0), (0.8, 8.0), (2.0, 6.0)]):
            lengths = scene_lengths(60, seed=seed + 11, low=low, high=high)
            sample = make_sample_video(
                Path(tmp) / f"acc{seed}.mp4", scene_seconds=lengths, width=640, height=360, fps=25
            )
            accuracy_videos.append((sample.path, sample.cut_times))
        cut_count = sum(len(c) for _, c in accuracy_videos)
        print(
            f"{'detector':10} {'precision':>9} {'recall':>7}   ({len(accuracy_videos)} videos, {cut_count} cuts)"
        )
        for detector in ("adaptive", "content"):
            precision, recall = accuracy(detector, accuracy_videos)
            print(f"{detector:10} {precision:9.3f} {recall:7.3f}")
        long_p, long_r = accuracy("adaptive", [(long_video, long_cuts)])
        print(f"adaptive on the long video: precision {long_p:.3f}, recall {long_r:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

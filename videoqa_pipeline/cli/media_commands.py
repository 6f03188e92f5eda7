"""`videoqa` sub-commands for the media layer: look at one file without Dagster.

    videoqa probe FILE [--json]
    videoqa scenes FILE [--max-frames N] [--detector adaptive|content] [--threshold X] [--json]
    videoqa keyframes FILE OUTDIR [--max-frames N] [--max-width W] [--detector ...]

Errors print one readable line on stderr and exit with status 1, never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from videoqa_pipeline.media import (
    DETECTORS,
    MediaError,
    detect_scenes,
    extract_keyframes,
    keyframe_timestamps,
    probe,
    select_scene_indices,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_MAX_FRAMES = 50


def _run(fn: Callable[[], T]) -> T:
    """Turn the library's errors into a one-line CLI error (click prints it and exits 1)."""
    try:
        return fn()
    except MediaError as exc:
        raise click.ClickException(str(exc)) from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from exc


def _file_argument() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # Existence is checked by probe() so the message is the same as in the pipeline.
    return click.argument("file", type=click.Path(dir_okay=True, path_type=Path))


@click.command("probe")
@_file_argument()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def probe_command(file: Path, as_json: bool) -> None:
    """Show container, duration, streams and rotation of FILE."""
    info = _run(lambda: probe(file, require_video=False))
    data = info.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{info.path}")
    click.echo(f"  container  {info.container}, {info.duration:.3f} s, {info.size} bytes")
    if info.video is not None:
        v = info.video
        click.echo(
            f"  video      {v.codec} {v.width}x{v.height} @ {v.fps:.3f} fps"
            f"{' (VFR)' if v.vfr else ''}, rotation {v.rotation}, {v.pix_fmt}, "
            f"{v.frame_count if v.frame_count is not None else '?'} frames"
        )
    else:
        click.echo("  video      none")
    if info.audio is not None:
        a = info.audio
        click.echo(f"  audio      {a.codec} {a.sample_rate} Hz, {a.channels} channel(s)")
    else:
        click.echo("  audio      none")


@click.command("scenes")
@_file_argument()
@click.option("--max-frames", type=click.IntRange(min=1), default=DEFAULT_MAX_FRAMES, show_default=True)
@click.option("--detector", type=click.Choice(DETECTORS), default="adaptive", show_default=True)
@click.option("--threshold", type=float, default=None, help="Detector threshold (default: the detector's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def scenes_command(
    file: Path, max_frames: int, detector: str, threshold: float | None, as_json: bool
) -> None:
    """Detect the scenes of FILE and show which ones get a keyframe."""
    scenes = _run(lambda: detect_scenes(file, detector=detector, threshold=threshold))
    selected = select_scene_indices(len(scenes), max_frames)
    if as_json:
        payload = {
            "scenes": [
                {
                    "index": s.index,
                    "start": round(s.start_seconds, 3),
                    "end": round(s.end_seconds, 3),
                    "start_frame": s.start_frame,
                    "end_frame": s.end_frame,
                }
                for s in scenes
            ],
            "selected": selected,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    chosen = set(selected)
    click.echo(f"{'scene':>5}  {'start':>9}  {'end':>9}  {'frames':>13}  selected")
    for s in scenes:
        mark = "*" if s.index in chosen else ""
        click.echo(
            f"{s.index:>5}  {s.start_seconds:>9.3f}  {s.end_seconds:>9.3f}  "
            f"{s.start_frame:>6}-{s.end_frame:<6}  {mark}"
        )
    click.echo(f"{len(scenes)} scene(s), {len(selected)} selected (max {max_frames})")


@click.command("keyframes")
@_file_argument()
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--max-frames", type=click.IntRange(min=1), default=DEFAULT_MAX_FRAMES, show_default=True)
@click.option("--max-width", type=click.IntRange(min=2), default=640, show_default=True)
@click.option("--detector", type=click.Choice(DETECTORS), default="adaptive", show_default=True)
def keyframes_command(file: Path, outdir: Path, max_frames: int, max_width: int, detector: str) -> None:
    """Detect scenes in FILE and write one JPEG per selected scene to OUTDIR."""

    def work() -> list[tuple[int, Any]]:
        scenes = detect_scenes(file, detector=detector)
        indices = select_scene_indices(len(scenes), max_frames)
        frames = extract_keyframes(file, keyframe_timestamps(scenes, indices), max_width=max_width)
        return list(zip(indices, frames, strict=True))

    pairs = _run(work)
    _run(lambda: outdir.mkdir(parents=True, exist_ok=True))
    for index, frame in pairs:
        target = outdir / f"scene_{index:04d}_{frame.timestamp:010.3f}s.jpg"
        target.write_bytes(frame.jpeg)
        click.echo(f"{target}  {frame.width}x{frame.height}  t={frame.timestamp:.3f}s")
    click.echo(f"{len(pairs)} keyframe(s) written to {outdir}")


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
    for command in (probe_command, scenes_command, keyframes_command):
        group.add_command(command)

"""`videoqa` sub-commands for the pipeline: check-config, process, demo."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from videoqa_pipeline.cli.common import load_settings
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.schema import TABLES

STAGE_ORDER = tuple(TABLES)  # one table per stage, in pipeline order


@click.command("check-config")
@click.option("--json", "as_json", is_flag=True, help="Print the effective settings as JSON.")
def check_config(as_json: bool) -> None:
    """Print the effective settings (secrets masked); exit 1 when any is invalid."""
    settings = Settings.from_env()
    shown = settings.describe()
    problems = settings.problems()
    if as_json:
        click.echo(json.dumps({"settings": shown, "problems": problems}, indent=2))
    else:
        width = max(len(name) for name in shown)
        for name, value in shown.items():
            click.echo(f"{name.ljust(width)}  {value}")
    if problems:
        click.echo(f"\n{len(problems)} problem(s):", err=True)
        for problem in problems:
            click.echo(f"  - {problem}", err=True)
        sys.exit(1)
    if not as_json:
        click.echo("\nconfiguration OK")


def _summary_line(step: str, seconds: float, metadata: dict[str, Any]) -> str:
    facts = {
        "source_video": lambda m: (
            f"{m.get('resolution', '?')}, {m.get('duration_seconds', '?')} s, audio {m.get('audio', '?')}"
        ),
        "normalized_video": lambda m: f"{m.get('resolution', '?')}, {m.get('size_mb', '?')} MB",
        "transcript": lambda m: (
            m.get("skipped")
            or f"{m.get('segments', 0)} segments, {m.get('words', 0)} words ({m.get('model', '?')})"
        ),
        "scenes": lambda m: f"{m.get('scenes', 0)} scenes ({m.get('detector', '?')})",
        "keyframes": lambda m: f"{m.get('keyframes', 0)} keyframes of {m.get('scenes', 0)} scenes",
        "frame_analyses": lambda m: (
            m.get("skipped")
            or f"{m.get('frames', 0)} frames, {m.get('frames_with_text', 0)} with text ({m.get('model', '?')})"
        ),
        "embeddings": lambda m: (
            m.get("skipped")
            or f"{m.get('items', 0)} vectors x {m.get('dimension', '?')} ({m.get('model', '?')})"
        ),
    }
    describe = facts.get(step, lambda m: "")
    return f"  {step:<17} {seconds:7.2f} s  {describe(metadata)}"


def _run_and_report(
    source: str, video_id: str | None, overrides: dict[str, Any], as_json: bool, verbose: bool
) -> None:
    from videoqa_pipeline.runner import open_instance, process_video
    from videoqa_pipeline.storage.errors import StorageError
    from videoqa_pipeline.video_ids import InvalidVideoIdError

    settings = load_settings()
    # The persistent instance the UI reads: this run, its partition and its events show there.
    with open_instance(settings) as instance:
        try:
            report = process_video(
                source,
                settings=settings,
                video_id=video_id,
                config_overrides=overrides,
                instance=instance,
                console_log_level="DEBUG" if verbose else "WARNING",
            )
        except (InvalidVideoIdError, StorageError) as error:
            raise click.ClickException(str(error)) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "video_id": report.video_id,
                    "source_uri": report.source_uri,
                    "success": report.success,
                    "error": report.error,
                    "run_id": report.run_id,
                    "wall_seconds": round(report.wall_seconds, 3),
                    "peak_rss_mb": round(report.peak_rss_mb, 1),
                    "steps": {
                        s.name: {"seconds": round(s.seconds, 3), "metadata": s.metadata} for s in report.steps
                    },
                },
                indent=2,
                default=str,
            )
        )
    else:
        click.echo(f"video {report.video_id}  ({report.source_uri})")
        by_name = {step.name: step for step in report.steps}
        for name in STAGE_ORDER:
            if name in by_name:
                click.echo(_summary_line(name, by_name[name].seconds, by_name[name].metadata))
        click.echo(f"  {'total':<17} {report.wall_seconds:7.2f} s  peak memory {report.peak_rss_mb:.0f} MB")
    if not report.success:
        raise click.ClickException(f"processing {report.video_id} failed: {report.error}")


@click.command("process")
@click.argument("source")
@click.option("--video-id", help="Partition key to use (default: derived from the file name).")
@click.option("--max-frames", type=int, help="Override max_frames_per_video for this run.")
@click.option("--no-transcription", is_flag=True, help="Skip speech transcription.")
@click.option("--no-vision", is_flag=True, help="Skip keyframe analysis.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Show Dagster's event log while running.")
def process(
    source: str,
    video_id: str | None,
    max_frames: int | None,
    no_transcription: bool,
    no_vision: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """Materialize every asset for one video (path or URI) in this process, on the configured storage."""
    overrides: dict[str, Any] = {}
    if max_frames is not None:
        overrides["max_frames_per_video"] = max_frames
    if no_transcription:
        overrides["enable_transcription"] = False
    if no_vision:
        overrides["enable_vision_analysis"] = False
    _run_and_report(source, video_id, overrides, as_json, verbose)


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Show Dagster's event log while running.")
def demo(as_json: bool, verbose: bool) -> None:
    """Process the bundled sample video end to end and print what each stage produced."""
    from videoqa_pipeline.runner import bundled_sample_source
    from videoqa_pipeline.video_ids import SAMPLE_VIDEO_ID

    _run_and_report(str(bundled_sample_source()), SAMPLE_VIDEO_ID, {}, as_json, verbose)


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
    for command in (check_config, process, demo):
        group.add_command(command)

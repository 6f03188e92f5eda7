"""Process one video through every asset in this process, without a daemon.

This is what `videoqa process` and `videoqa demo` use, and what tests and benchmarks use
to run the real pipeline: the same assets, resources and storage as `dagster dev`, only
launched in-process.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from videoqa_pipeline.definitions import VIDEO_PIPELINE_JOB, build_definitions
from videoqa_pipeline.defs.partitions import videos_partitions
from videoqa_pipeline.defs.resources import database_of
from videoqa_pipeline.fetch import canonical_source_uri
from videoqa_pipeline.run_tags import SOURCE_URI_TAG
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.ledger import register_source
from videoqa_pipeline.video_ids import validate_video_id, video_id_from_uri


@dataclass
class StepReport:
    name: str
    seconds: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProcessReport:
    video_id: str
    source_uri: str
    success: bool
    run_id: str
    wall_seconds: float
    peak_rss_mb: float
    steps: list[StepReport]
    error: str | None = None

    def metadata_of(self, step: str) -> dict[str, Any]:
        return next((s.metadata for s in self.steps if s.name == step), {})


def _plain(value: Any) -> Any:
    inner = getattr(value, "value", value)
    return inner if isinstance(inner, str | int | float | bool | type(None) | list | dict) else str(inner)


def process_video(
    source: str,
    *,
    settings: Settings,
    video_id: str | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    instance: dg.DagsterInstance | None = None,
    console_log_level: str = "WARNING",
) -> ProcessReport:
    """Materialize all seven assets for ``source`` and report per-step time and metadata.

    Raises:
        InvalidVideoIdError: ``video_id`` is not a safe partition key.
    """
    source_uri = canonical_source_uri(source)
    video_id = validate_video_id(video_id) if video_id else video_id_from_uri(source_uri)
    # Plain values, not EnvVar references: this process already holds the settings, and a
    # reference would be resolved against an environment these settings may not come from.
    definitions = build_definitions(settings, secrets_as_env_vars=False)
    register_source(database_of(settings), video_id, source_uri)

    owns_instance = instance is None
    instance = instance or dg.DagsterInstance.ephemeral()
    try:
        instance.add_dynamic_partitions(videos_partitions.name or "videos", [video_id])
        # Dagster's console logger narrates every event at DEBUG; a CLI user wants the summary.
        run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": console_log_level}}}}
        if config_overrides:
            run_config["resources"] = {"pipeline_config": {"config": dict(config_overrides)}}
        started = time.perf_counter()
        # The same job the sensors launch, so the run shows under video_pipeline in the UI.
        result = definitions.resolve_job_def(VIDEO_PIPELINE_JOB).execute_in_process(
            partition_key=video_id,
            instance=instance,
            run_config=run_config,
            tags={SOURCE_URI_TAG: source_uri},
            raise_on_error=False,
        )
        wall = time.perf_counter() - started
        return ProcessReport(
            video_id=video_id,
            source_uri=source_uri,
            success=result.success,
            run_id=result.run_id,
            wall_seconds=wall,
            peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            steps=_step_reports(instance, result.run_id),
            error=None if result.success else _failure_message(result),
        )
    finally:
        if owns_instance:
            instance.dispose()


def open_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent Dagster instance the UI shows: DAGSTER_HOME, else ``$VIDEOQA_HOME/dagster``
    (where this project's dagster.yaml keeps `dagster dev`'s history)."""
    if settings.dagster_home is not None:
        return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(settings.dagster_home.resolve())))
    directory = settings.dagster_instance_dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(directory)))


def _step_reports(instance: dg.DagsterInstance, run_id: str) -> list[StepReport]:
    started: dict[str, float] = {}
    reports: dict[str, StepReport] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        key = event.step_key
        if event.event_type == dg.DagsterEventType.STEP_START:
            started.setdefault(key, entry.timestamp)
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            reports.setdefault(key, StepReport(key, 0.0)).seconds = entry.timestamp - started.get(
                key, entry.timestamp
            )
        elif event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            metadata = event.event_specific_data.materialization.metadata  # type: ignore[union-attr]
            reports.setdefault(key, StepReport(key, 0.0)).metadata = {
                k: _plain(v) for k, v in metadata.items()
            }
    return list(reports.values())


def _error_text(error: Any) -> str:
    """An error's message with its causes: after the last retry Dagster's own message is only
    "Exceeded max_retries of 2", and what went wrong is in the cause."""
    parts: list[str] = []
    while error is not None and len(parts) < 5:
        message = (error.message or "").strip()
        if message and message not in parts:
            parts.append(message)
        error = error.cause
    return ": ".join(parts) or "step failed"


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            user_message = event.step_failure_data.user_failure_data
            if user_message is not None and user_message.description:
                return user_message.description
            return _error_text(event.step_failure_data.error)
        if event.event_type == dg.DagsterEventType.RUN_FAILURE:
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                return _error_text(error)
    return "run failed"


def reembed_in_one_run(
    selection: Mapping[str, Any], *, settings: Settings, instance: dg.DagsterInstance
) -> tuple[bool, str, str | None]:
    """Run ``reembed_videos`` for ``selection`` (its run config) in this process, in ``instance``.

    Returns:
        Whether it succeeded, its run ID, and its error when it did not.
    """
    from videoqa_pipeline.defs.reembed_videos import REEMBED_VIDEOS_JOB

    definitions = build_definitions(settings, secrets_as_env_vars=False)
    result = definitions.resolve_job_def(REEMBED_VIDEOS_JOB).execute_in_process(
        instance=instance,
        # INFO: the job's progress lines, one per page of videos, are what a CLI user watches.
        run_config={
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
            "ops": {"reembed_videos": {"config": dict(selection)}},
        },
        raise_on_error=False,
    )
    return result.success, result.run_id, None if result.success else _failure_message(result)


def bundled_sample_source() -> Path:
    from videoqa_pipeline.media import bundled_sample_video

    return bundled_sample_video()

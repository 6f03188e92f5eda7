"""Run status write-back: the backstop for the run's own updates, and a sweeper for lost runs.

* ``job_run_started_sensor``: running, with the run ID.
* ``job_run_succeeded_sensor``: succeeded, with the seconds each step took.
* ``job_run_failed_sensor``: failed with the failing step and its error message; a transient
  failure goes back to pending while ``WORKER_MAX_ATTEMPTS`` allows (bad input never does).
* ``job_run_cancelled_sensor``: cancelled.
* ``job_sweeper``: queued or running jobs whose run vanished or ended without the ledger hearing of
  it, among the jobs *this* Dagster instance queued: another instance's runs (a second scheduler
  on the same ledger) are invisible here, so their absence says nothing. Runs longer than ``VIDEOQA_RUN_TIMEOUT`` are stopped by Dagster's run monitoring (their
  ``dagster/max_runtime`` tag); the cancelled-run sensor then records a failed, retryable attempt.

All writes are idempotent and keyed by job, attempt and run (:mod:`videoqa_pipeline.storage.ledger`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import dagster as dg

from videoqa_pipeline.defs.hooks import job_of_run
from videoqa_pipeline.defs.jobs import MAX_RUNTIME_TAG
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.defs.sensors.job_sensor import TRANSIENT_DATABASE_ERRORS
from videoqa_pipeline.defs.sensors.scheduler_identity import scheduler_identity
from videoqa_pipeline.run_tags import PARENT_RUN_ID_TAG
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger, schedulers
from videoqa_pipeline.storage.database import Database

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 30
SWEEP_BATCH = 200
#: A job's run is "vanished" when Dagster has no record of it this long after it was linked.
_VANISHED = "its run {run_id} no longer exists in Dagster (deleted, or the instance was reset)"


def step_durations(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds each step of ``run_id`` took (steps that have both start and end times)."""
    durations: dict[str, float] = {}
    for stats in instance.get_run_step_stats(run_id):
        if stats.start_time is not None and stats.end_time is not None:
            durations[stats.step_key] = round(stats.end_time - stats.start_time, 3)
    return durations


def failure_details(context: dg.RunFailureSensorContext) -> tuple[str, str | None, bool]:
    """``(message, failed step, transient)`` of a failed run, from its step failure events."""
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        user = data.user_failure_data
        if user is not None and user.description:
            # Our assets raise Failure (no retries) for bad input: permanent.
            return user.description, event.step_key, False
        message = data.error.message.strip() if data.error else "step failed"
        return message, event.step_key, True
    message = context.failure_event.message or "run failed"
    return message.strip(), None, True


def build_run_status_sensors(
    settings: Settings, monitored_jobs: Sequence[dg.UnresolvedAssetJobDefinition]
) -> list[dg.SensorDefinition]:
    """The four run status sensors and the sweeper, all running by default."""
    return [*_write_back_sensors(settings, monitored_jobs), _sweeper(settings)]


def _write_back_sensors(
    settings: Settings, monitored_jobs: Sequence[dg.UnresolvedAssetJobDefinition]
) -> list[dg.SensorDefinition]:
    """started / succeeded / failed / cancelled → the run's job row."""
    max_attempts = settings.worker_max_attempts
    interval = max(1, round(settings.worker_poll_ms / 1000))
    # Every run sensor watches the pipeline's jobs at the poll interval and runs by default.
    watching: dict[str, Any] = {
        "monitored_jobs": list(monitored_jobs),
        "minimum_interval_seconds": interval,
        "default_status": dg.DefaultSensorStatus.RUNNING,
    }
    return [*_progress_sensors(watching), *_failure_sensors(watching, max_attempts)]


def _progress_sensors(watching: dict[str, Any]) -> list[dg.SensorDefinition]:
    """Started and succeeded runs → running (with the run ID) and succeeded (with step times)."""

    @dg.run_status_sensor(
        name="job_run_started_sensor",
        run_status=dg.DagsterRunStatus.STARTED,
        **watching,
        description="Marks a run's job running, with its run ID.",
    )
    def job_run_started_sensor(context: dg.RunStatusSensorContext, database: DatabaseResource) -> None:
        job = job_of_run(context.dagster_run.tags)
        if job is not None:
            _guard(
                context,
                lambda: ledger.mark_running(
                    database.get(),
                    job[0],
                    job[1],
                    context.dagster_run.run_id,
                    parent_run_id=context.dagster_run.tags.get(PARENT_RUN_ID_TAG),
                ),
            )

    @dg.run_status_sensor(
        name="job_run_succeeded_sensor",
        run_status=dg.DagsterRunStatus.SUCCESS,
        **watching,
        description="Marks a run's job succeeded, with the seconds each step took.",
    )
    def job_run_succeeded_sensor(context: dg.RunStatusSensorContext, database: DatabaseResource) -> None:
        job = job_of_run(context.dagster_run.tags)
        if job is not None:
            run_id = context.dagster_run.run_id
            durations = step_durations(context.instance, run_id)
            _guard(context, lambda: ledger.mark_succeeded(database.get(), job[0], job[1], run_id, durations))

    return [job_run_started_sensor, job_run_succeeded_sensor]


def _failure_sensors(watching: dict[str, Any], max_attempts: int) -> list[dg.SensorDefinition]:
    """Failed and cancelled runs → failed (or pending again while attempts remain) and cancelled."""

    @dg.run_failure_sensor(
        name="job_run_failed_sensor",
        **watching,
        description="Marks a run's job failed with the failing step and its error (or pending for a retry).",
    )
    def job_run_failed_sensor(context: dg.RunFailureSensorContext, database: DatabaseResource) -> None:
        job = job_of_run(context.dagster_run.tags)
        if job is None:
            return
        message, step, transient = failure_details(context)
        _guard(
            context,
            lambda: ledger.mark_failed(
                database.get(),
                job[0],
                job[1],
                context.dagster_run.run_id,
                error=message,
                failed_step=step,
                transient=transient,
                max_attempts=max_attempts,
            ),
        )

    @dg.run_status_sensor(
        name="job_run_cancelled_sensor",
        run_status=dg.DagsterRunStatus.CANCELED,
        **watching,
        description="Marks a run's job cancelled.",
    )
    def job_run_cancelled_sensor(context: dg.RunStatusSensorContext, database: DatabaseResource) -> None:
        job = job_of_run(context.dagster_run.tags)
        if job is not None:
            record = context.instance.get_run_record_by_id(context.dagster_run.run_id)
            _guard(
                context,
                lambda: record_cancellation(database.get(), job, record, max_attempts),
            )

    return [job_run_failed_sensor, job_run_cancelled_sensor]


def _sweeper(settings: Settings) -> dg.SensorDefinition:
    """The backstop for runs the write-back sensors never heard of."""

    @dg.sensor(
        name="job_sweeper",
        minimum_interval_seconds=SWEEP_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Fails (or retries) jobs whose run vanished or ended without the ledger hearing of it.",
    )
    def job_sweeper(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SkipReason:
        try:
            swept = sweep_jobs(context.instance, database.get(), settings)
        except TRANSIENT_DATABASE_ERRORS as error:
            context.log.warning(f"job ledger not reachable, skipping this sweep: {error}")
            return dg.SkipReason(f"job ledger not reachable: {error}")
        return dg.SkipReason(f"swept {swept} job(s)" if swept else "nothing to sweep")

    return job_sweeper


def _guard(context: dg.RunStatusSensorContext, write: object) -> None:
    """Run a ledger write; a database outage is logged (the sweeper catches up later), not raised."""
    try:
        write()  # type: ignore[operator]
    except TRANSIENT_DATABASE_ERRORS as error:
        context.log.warning(f"job ledger not reachable; the sweeper will reconcile this run later: {error}")


def sweep_jobs(instance: dg.DagsterInstance, database: Database, settings: Settings) -> int:
    """Reconcile this instance's queued and running jobs with their runs; returns how many changed.

    Args:
        instance: The Dagster instance holding the runs; only the jobs it queued are looked at.
        database: The ledger's database.
        settings: ``WORKER_MAX_ATTEMPTS``.
    """
    changed = 0
    owner = scheduler_identity(instance).instance_id
    # Jobs queued without an owner belong to whoever holds the lease (or to this instance alone).
    holder = schedulers.lease_holder(database)
    unowned = holder is None or holder.instance_id == owner
    for job in ledger.active_jobs(database, SWEEP_BATCH, scheduler_id=owner, include_unowned=unowned):
        if job.run_id is None:
            continue  # the job sensor re-requests queued jobs without a run
        record = instance.get_run_record_by_id(job.run_id)
        outcome: bool | str | None = None
        if record is None:
            outcome = ledger.mark_failed(
                database,
                job.id,
                job.attempts,
                job.run_id,
                error=_VANISHED.format(run_id=job.run_id),
                failed_step=None,
                transient=True,
                max_attempts=settings.worker_max_attempts,
            )
        else:
            status = record.dagster_run.status
            if status == dg.DagsterRunStatus.SUCCESS:
                outcome = ledger.mark_succeeded(
                    database, job.id, job.attempts, job.run_id, step_durations(instance, job.run_id)
                )
            elif status == dg.DagsterRunStatus.FAILURE:
                outcome = ledger.mark_failed(
                    database,
                    job.id,
                    job.attempts,
                    job.run_id,
                    error=f"run {job.run_id} failed (see its event log in the Dagster UI)",
                    failed_step=None,
                    transient=True,
                    max_attempts=settings.worker_max_attempts,
                )
            elif status == dg.DagsterRunStatus.CANCELED:
                outcome = record_cancellation(
                    database, (job.id, job.attempts), record, settings.worker_max_attempts
                )
        if outcome:
            changed += 1
            logger.info("sweeper: job %d -> %s", job.id, outcome)
    return changed


def exceeded_max_runtime(record: dg.RunRecord | None) -> float | None:
    """The run's ``dagster/max_runtime`` when it ran at least that long (run monitoring stopped it)."""
    if record is None:
        return None
    limit = record.dagster_run.tags.get(MAX_RUNTIME_TAG)
    try:
        seconds = float(limit) if limit else None
    except ValueError:
        return None
    if seconds is None or record.start_time is None:
        return None
    ended = record.end_time if record.end_time is not None else time.time()
    return seconds if ended - record.start_time >= seconds else None


def record_cancellation(
    database: Database, job: tuple[int, int], record: dg.RunRecord | None, max_attempts: int
) -> bool | str | None:
    """A cancelled run's news for its job: cancelled, or, when Dagster's run monitoring stopped it
    for running past VIDEOQA_RUN_TIMEOUT, a failed attempt that is retried while attempts remain."""
    run_id = record.dagster_run.run_id if record is not None else ""
    limit = exceeded_max_runtime(record)
    if limit is None:
        return ledger.mark_run_cancelled(database, job[0], job[1], run_id)
    return ledger.mark_failed(
        database,
        job[0],
        job[1],
        run_id,
        error=f"run {run_id} ran longer than VIDEOQA_RUN_TIMEOUT ({limit:g} s) and was stopped by "
        "Dagster's run monitoring",
        failed_step=None,
        transient=True,
        max_attempts=max_attempts,
    )

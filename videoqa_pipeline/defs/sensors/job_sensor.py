"""The job sensor: pending rows of the job ledger become runs, one per job attempt.

Each tick, bounded by ``VIDEOQA_JOBS_PER_TICK`` and by the backpressure cap
``VIDEOQA_MAX_QUEUED_RUNS`` (this instance's jobs queued or running), the sensor

0. renews this Dagster instance's lease on the ledger (:mod:`videoqa_pipeline.storage.schedulers`):
   only the lease holder takes new jobs, so a second instance on the same ledger stands by and
   says so in its skip reason instead of running every job a second time;
1. re-requests runs for jobs *this instance* queued earlier that have no run yet: after a crash
   between queuing rows and Dagster creating their runs, nothing is lost, and the run key
   (``job-<id>-attempt-<n>``) keeps Dagster from creating a second run for the same attempt.
   Another instance's jobs are never touched: their runs live where this one cannot look;
2. claims the oldest pending rows in one transaction (``FOR UPDATE SKIP LOCKED`` over the
   ``(status, id)`` index: no table scan), failing the ones that cannot run with the reason, and
   recording this instance as their scheduler;
3. returns the new partitions and one run request per queued job, with the run config built
   from the settings and the job's options, and tags naming the job, attempt and source.

A database that does not answer skips the tick with a warning instead of failing it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import psycopg

from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.jobs import PIPELINE_STAGES, run_timeout_tags, stages_from
from videoqa_pipeline.defs.partitions import videos_partitions
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.defs.sensors.gates import skip_reason
from videoqa_pipeline.defs.sensors.scheduler_identity import scheduler_identity
from videoqa_pipeline.run_tags import JOB_ATTEMPT_TAG, JOB_ID_TAG, JOB_SOURCE_KIND_TAG, SOURCE_URI_TAG
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger, schedulers
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

JOB_SENSOR_NAME = "job_sensor"

#: Errors that mean "the database is not reachable right now": skip the tick, try the next one.
TRANSIENT_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailableError,
    psycopg.OperationalError,
    psycopg.errors.QueryCanceled,
)


def sensor_interval_seconds(poll_ms: int) -> int:
    """Dagster sensor intervals are whole seconds: ``WORKER_POLL_MS`` rounded up, at least 1."""
    return max(1, math.ceil(poll_ms / 1000))


def job_run_config(settings: Settings, options: Mapping[str, Any]) -> dict[str, Any]:
    """Run config for a job: the settings' processing defaults with the job's options on top."""
    defaults = PipelineConfig.from_settings(settings).model_dump()
    merged = {key: value for key, value in {**defaults, **dict(options)}.items() if value is not None}
    return {"resources": {"pipeline_config": {"config": merged}}}


def job_run_request(
    job: ledger.Job,
    settings: Settings,
    downstream: Mapping[str, Sequence[dg.AssetKey]],
) -> dg.RunRequest:
    """The run request of one job attempt."""
    assert job.video_id is not None  # claimed jobs always have one
    return dg.RunRequest(
        run_key=job.run_key,
        partition_key=job.video_id,
        run_config=job_run_config(settings, job.options),
        asset_selection=list(downstream[job.from_stage]) if job.from_stage else None,
        tags={
            JOB_ID_TAG: str(job.id),
            JOB_ATTEMPT_TAG: str(job.attempts),
            JOB_SOURCE_KIND_TAG: job.source_kind,
            SOURCE_URI_TAG: job.source_uri,
            **run_timeout_tags(settings),
        },
    )


def downstream_selections() -> dict[str, list[dg.AssetKey]]:
    """For every stage, that stage and everything downstream of it (what ``--from STAGE`` runs)."""
    return {stage: [dg.AssetKey(name) for name in stages_from(stage)] for stage in PIPELINE_STAGES}


def _existing_runs(instance: dg.DagsterInstance, jobs: Sequence[ledger.Job]) -> dict[tuple[int, int], str]:
    """Run IDs of the runs that already exist for these job attempts, in one run-storage query."""
    if not jobs:
        return {}
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={JOB_ID_TAG: [str(job.id) for job in jobs]}), limit=4 * len(jobs)
    )
    found: dict[tuple[int, int], str] = {}
    for record in records:
        tags = record.dagster_run.tags
        try:
            found[(int(tags[JOB_ID_TAG]), int(tags.get(JOB_ATTEMPT_TAG, "0")))] = record.dagster_run.run_id
        except (KeyError, ValueError):
            continue
    return found


def _resend_unlinked(
    context: dg.SensorEvaluationContext,
    database: Database,
    settings: Settings,
    downstream: Mapping[str, Sequence[dg.AssetKey]],
    scheduler_id: str,
) -> list[dg.RunRequest]:
    """Step 1: this instance's queued jobs without a run: link the runs that exist, request the others."""
    requests: list[dg.RunRequest] = []
    unlinked = ledger.queued_jobs_without_run(database, settings.max_queued_runs, scheduler_id=scheduler_id)
    existing = _existing_runs(context.instance, unlinked)
    for job in unlinked:
        run_id = existing.get((job.id, job.attempts))
        if run_id is not None:
            ledger.link_run(database, job.id, job.attempts, run_id)
        else:
            logger.warning(
                "job %d attempt %d was queued but has no run: requesting it again", job.id, job.attempts
            )
            requests.append(job_run_request(job, settings, downstream))
    return requests


def evaluate_job_tick(
    context: dg.SensorEvaluationContext,
    database: Database,
    settings: Settings,
    downstream: Mapping[str, Sequence[dg.AssetKey]],
) -> dg.SensorResult | dg.SkipReason:
    """One tick of the job sensor (see the module docstring); separate from the decorator for tests."""
    identity = scheduler_identity(context.instance)
    lease = schedulers.hold_lease(database, identity.instance_id, identity.description)
    if lease.previous is not None:
        context.log.warning(
            f"took over the ledger from {lease.previous.label}, silent for "
            f"{lease.previous.silent_seconds:.0f} s; the jobs it queued stay its own"
        )
    run_requests = _resend_unlinked(context, database, settings, downstream, identity.instance_id)
    # 2. Claim pending jobs within the backpressure cap, when this instance holds the lease.
    headroom = settings.max_queued_runs - ledger.count_active(database, scheduler_id=identity.instance_id)
    claim = ledger.ClaimResult([], [])
    if lease.held:
        claim = ledger.claim_pending_jobs(
            database,
            min(settings.jobs_per_tick, headroom),
            policy=settings.source_policy,
            scheduler_id=identity.instance_id,
        )
    for job in claim.rejected:
        context.log.warning(f"job {job.id} failed at intake: {job.error}")
    run_requests.extend(job_run_request(job, settings, downstream) for job in claim.queued)
    if not run_requests:
        if not lease.held:
            return dg.SkipReason(lease.standby_reason(identity.instance_id))
        if headroom <= 0:
            return dg.SkipReason(
                f"backpressure: {settings.max_queued_runs} jobs queued or running (VIDEOQA_MAX_QUEUED_RUNS)"
            )
        suffix = f"; {len(claim.rejected)} rejected" if claim.rejected else ""
        return dg.SkipReason(f"no pending jobs{suffix}")
    keys = sorted({request.partition_key for request in run_requests if request.partition_key})
    context.log.info(
        f"requesting {len(run_requests)} run(s): jobs {[r.tags[JOB_ID_TAG] for r in run_requests]}"
    )
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[videos_partitions.build_add_request(keys)],
    )


def build_job_sensor(settings: Settings, job_name: str) -> dg.SensorDefinition:
    """The job sensor for ``job_name``, ticking every ``WORKER_POLL_MS`` (rounded up to seconds).

    Args:
        settings: Poll interval, backpressure cap, per-tick cap and processing defaults.
        job_name: The asset job runs are requested for.

    Returns:
        A sensor that is running by default.
    """
    downstream = downstream_selections()

    @dg.sensor(
        name=JOB_SENSOR_NAME,
        job_name=job_name,
        minimum_interval_seconds=sensor_interval_seconds(settings.worker_poll_ms),
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Pending jobs of the videoqa_jobs ledger become runs, one per job attempt, with backpressure.",
    )
    def job_sensor(
        context: dg.SensorEvaluationContext, database: DatabaseResource
    ) -> dg.SensorResult | dg.SkipReason:
        gate = skip_reason(settings, enabled=True, how_to_enable="")
        if gate is not None:
            return gate
        try:
            return evaluate_job_tick(context, database.get(), settings, downstream)
        except TRANSIENT_DATABASE_ERRORS as error:
            context.log.warning(f"job ledger not reachable, skipping this tick: {error}")
            return dg.SkipReason(f"job ledger not reachable: {error}")

    return job_sensor

"""A run keeps its own job row up to date: running at start, succeeded or failed at the end.

A step that succeeded with less than all of its input (a stage's ``warning`` fact, e.g. audio that
does not decode from 12.0 s on) adds that warning to the row, so the job reads "succeeded, with
warnings" wherever it is shown.

Run status sensors lag and can miss events (dagster #19225, #21526), so the run writes the
outcome itself; the sensors and the sweeper in :mod:`.run_status` are the backstop. Every write
is an idempotent, forward-only update keyed by job, attempt and run
(:mod:`videoqa_pipeline.storage.ledger`), so the two paths may race freely.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import dagster as dg

from videoqa_pipeline.run_tags import JOB_ATTEMPT_TAG, JOB_ID_TAG, PARENT_RUN_ID_TAG, PARTITION_TAG
from videoqa_pipeline.steps.result import WARNING_FACT
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database

logger = logging.getLogger(__name__)


#: The sink of the asset graph: every run of the pipeline (full or from a stage) ends with it.
FINAL_STEP = "embeddings"


def job_of_run(tags: Mapping[str, str]) -> tuple[int, int] | None:
    """``(job_id, attempt)`` from a run's tags, or None for a run that serves no job."""
    job_id, attempt = tags.get(JOB_ID_TAG), tags.get(JOB_ATTEMPT_TAG)
    if not job_id or not attempt:
        return None
    try:
        return int(job_id), int(attempt)
    except ValueError:
        logger.warning("run tags %s=%r %s=%r are not numbers", JOB_ID_TAG, job_id, JOB_ATTEMPT_TAG, attempt)
        return None


def record_run_start(run: dg.DagsterRun, database: Database) -> None:
    """Mark the run's job running; stop at once when the job was cancelled meanwhile.

    Args:
        run: The current run.
        database: The ledger's database.

    Raises:
        dagster.Failure: the job was cancelled (no retries).
    """
    job = job_of_run(run.tags)
    if job is None:
        return
    status = ledger.mark_running(
        database, job[0], job[1], run.run_id, parent_run_id=run.tags.get(PARENT_RUN_ID_TAG)
    )
    if status == ledger.CANCELLED:
        raise dg.Failure(
            description=f"job {job[0]} was cancelled before its run started; `videoqa requeue {job[0]}` runs it again",
            allow_retries=False,
        )
    if status != ledger.RUNNING:
        logger.warning("run %s serves job %d attempt %d, which is %s", run.run_id, job[0], job[1], status)


def failure_is_permanent(error: BaseException | None) -> bool:
    """Bad input (``Failure(allow_retries=False)``) is permanent; anything else may be transient."""
    return isinstance(error, dg.Failure) and not getattr(error, "allow_retries", True)


def failure_message(error: BaseException | None, step: str = "step", video_id: str | None = None) -> str:
    """The readable part of a step's exception, saying which step of which video failed.

    ``Failure`` descriptions already say both; other exceptions are transient errors whose
    retries ran out, and their text alone often names only a URL or a host.
    """
    if isinstance(error, dg.Failure) and error.description:
        return error.description
    where = f"{step} failed" + (f" for video {video_id!r}" if video_id else "")
    if error is None:
        return where
    return f"{where} after its retries: {type(error).__name__}: {error}".strip()


def step_warning(context: dg.HookContext) -> str | None:
    """The ``warning`` fact of the step's output metadata, if it has one."""
    for metadata in context.op_output_metadata.values():
        value = metadata.get(WARNING_FACT) if isinstance(metadata, Mapping) else None
        text = getattr(value, "value", value)
        if isinstance(text, str) and text:
            return text
    return None


def _job_of_hook(context: dg.HookContext) -> tuple[int, int] | None:
    run = context.instance.get_run_by_id(context.run_id)
    return None if run is None else job_of_run(run.tags)


def _partition_of_hook(context: dg.HookContext) -> str | None:
    run = context.instance.get_run_by_id(context.run_id)
    return None if run is None else run.tags.get(PARTITION_TAG)


def _parent_of_hook(context: dg.HookContext) -> str | None:
    run = context.instance.get_run_by_id(context.run_id)
    return None if run is None else run.tags.get(PARENT_RUN_ID_TAG)


def build_job_hooks(max_attempts: int) -> set[dg.HookDefinition]:
    """Success and failure hooks that write the run's outcome to its job row.

    The success hook fires after a step's output is stored; on the final step it marks the job
    succeeded (earlier steps only make sure the job shows as running). The failure hook fires once
    a step has used up its retries.
    """

    @dg.success_hook(name="videoqa_job_step_succeeded", required_resource_keys={"database"})
    def job_step_succeeded(context: dg.HookContext) -> None:
        job = _job_of_hook(context)
        if job is None:
            return
        database = context.resources.database.get()
        warning = step_warning(context)
        if warning is not None:
            ledger.add_job_warning(database, job[0], job[1], context.run_id, context.op.name, warning)
            context.log.warning("job %d: %s succeeded with a warning: %s", job[0], context.op.name, warning)
        if context.op.name == FINAL_STEP:
            ledger.mark_succeeded(database, job[0], job[1], context.run_id)
        else:
            ledger.mark_running(
                database, job[0], job[1], context.run_id, parent_run_id=_parent_of_hook(context)
            )

    @dg.failure_hook(name="videoqa_job_step_failed", required_resource_keys={"database"})
    def job_step_failed(context: dg.HookContext) -> None:
        job = _job_of_hook(context)
        if job is None:
            return
        error = context.op_exception
        status = ledger.mark_failed(
            context.resources.database.get(),
            job[0],
            job[1],
            context.run_id,
            error=failure_message(error, context.op.name, _partition_of_hook(context)),
            failed_step=context.op.name,
            transient=not failure_is_permanent(error),
            max_attempts=max_attempts,
        )
        context.log.info("job %d attempt %d is now %s", job[0], job[1], status)

    return {job_step_succeeded, job_step_failed}

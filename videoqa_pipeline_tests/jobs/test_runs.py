"""Runs write their own job's outcome (hooks and the start call); the sweeper reconciles the rest.

Real runs of the pipeline in this process, on the embedded PostgreSQL, with a tiny video and the
models switched off (these tests are about jobs, not content).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline.definitions import VIDEO_PIPELINE_JOB, build_definitions
from videoqa_pipeline.defs.partitions import videos_partitions
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.defs.sensors.job_sensor import downstream_selections, job_run_request
from videoqa_pipeline.defs.sensors.run_status import sweep_jobs
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline_tests.jobs.conftest import QUIET


@pytest.fixture(scope="module")
def run_settings(jobs_home: Path) -> Settings:
    return Settings.from_env({**QUIET, "VIDEOQA_HOME": str(jobs_home), "WORKER_MAX_ATTEMPTS": "2"}).validate()


@pytest.fixture(scope="module")
def definitions(run_settings: Settings) -> dg.Definitions:
    return build_definitions(run_settings)


@pytest.fixture(scope="module")
def db(run_settings: Settings) -> Iterator[Database]:
    yield DatabaseResource(home=str(run_settings.home)).get()


def _run_job(
    job_id: int, definitions: dg.Definitions, settings: Settings, db: Database, instance: dg.DagsterInstance
) -> tuple[ledger.Job, dg.ExecuteInProcessResult]:
    """Claim ``job_id`` as the sensor does and execute its run request in this process."""
    ledger.claim_pending_jobs(db, 50)
    job = ledger.get_job(db, job_id)
    assert job.status == "queued", job
    request = job_run_request(job, settings, downstream_selections())
    assert request.partition_key is not None
    instance.add_dynamic_partitions(videos_partitions.name or "videos", [request.partition_key])
    result = definitions.resolve_job_def(VIDEO_PIPELINE_JOB).execute_in_process(
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags=request.tags,
        instance=instance,
        raise_on_error=False,
        asset_selection=request.asset_selection,
    )
    return job, result


def test_a_run_marks_its_job_running_then_succeeded(
    definitions: dg.Definitions,
    run_settings: Settings,
    db: Database,
    instance: dg.DagsterInstance,
    tiny_video: Path,
) -> None:
    submitted = ledger.submit_job(db, ledger.JobRequest(str(tiny_video), options={"max_frames_per_video": 1}))
    job, result = _run_job(submitted.job_id, definitions, run_settings, db, instance)
    assert result.success
    done = ledger.get_job(db, job.id)
    assert (done.status, done.run_id, done.error) == ("succeeded", result.run_id, None)
    assert (
        done.started_at is not None and done.finished_at is not None and done.started_at <= done.finished_at
    )
    keyframes = result.asset_materializations_for_node("keyframes")[0]
    assert keyframes.metadata["max_frames_per_video"].value == 1  # the job's option reached the run
    # The run status sensor's backstop (here: the sweeper) adds per-step durations, idempotently.
    ledger_row = ledger.get_job(db, job.id)
    assert ledger.mark_succeeded(db, job.id, job.attempts, result.run_id, {"source_video": 1.0})
    assert ledger.get_job(db, job.id).finished_at == ledger_row.finished_at


def test_bad_input_fails_its_job_once_with_a_readable_error(
    definitions: dg.Definitions,
    run_settings: Settings,
    db: Database,
    instance: dg.DagsterInstance,
    videos_dir: Path,
    tiny_video: Path,
) -> None:
    notes = videos_dir / "notes.mp4"
    notes.write_text("these are meeting notes, not a video\n" * 50)
    bad = ledger.submit_job(db, ledger.JobRequest(str(notes))).job_id
    good = ledger.submit_job(db, ledger.JobRequest(str(tiny_video), video_id="good-neighbour")).job_id
    _, bad_result = _run_job(bad, definitions, run_settings, db, instance)
    assert not bad_result.success
    failed = ledger.get_job(db, bad)
    assert failed.status == "failed", "bad input is never retried"
    assert failed.failed_step == "source_video" and failed.transient is False
    assert "notes.mp4" in (failed.error or "") and failed.run_id == bad_result.run_id
    _, good_result = _run_job(good, definitions, run_settings, db, instance)
    assert good_result.success and ledger.get_job(db, good).status == "succeeded"


def test_a_job_cancelled_before_its_run_starts_stops_the_run(
    definitions: dg.Definitions,
    run_settings: Settings,
    db: Database,
    instance: dg.DagsterInstance,
    tiny_video: Path,
) -> None:
    job_id = ledger.submit_job(db, ledger.JobRequest(str(tiny_video))).job_id
    claimed = {job.id: job for job in ledger.claim_pending_jobs(db, 50).queued}[job_id]
    ledger.cancel_job(db, job_id)
    request = job_run_request(claimed, run_settings, {})
    instance.add_dynamic_partitions("videos", [request.partition_key or ""])
    result = definitions.resolve_job_def(VIDEO_PIPELINE_JOB).execute_in_process(
        partition_key=request.partition_key, tags=request.tags, instance=instance, raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert "was cancelled" in (failure.step_failure_data.user_failure_data.description or "")  # type: ignore[union-attr]
    assert ledger.get_job(db, job_id).status == "cancelled"


def test_the_sweeper_finishes_jobs_whose_run_ended_or_vanished(
    run_settings: Settings, db: Database, instance: dg.DagsterInstance, tiny_video: Path
) -> None:
    ended, vanished = (ledger.submit_job(db, ledger.JobRequest(str(tiny_video))).job_id for _ in range(2))
    ledger.claim_pending_jobs(db, 50)
    run = instance.add_run(dg.DagsterRun(job_name=VIDEO_PIPELINE_JOB, run_id="ended-run"))
    instance.handle_new_event(  # the success event a lagging run status sensor never delivered
        dg.EventLogEntry(
            error_info=None,
            level="DEBUG",
            user_message="",
            run_id=run.run_id,
            timestamp=0.0,
            dagster_event=dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.RUN_SUCCESS.value, job_name=VIDEO_PIPELINE_JOB
            ),
        )
    )
    ledger.mark_running(db, ended, 1, "ended-run")
    ledger.mark_running(db, vanished, 1, "no-such-run")
    assert sweep_jobs(instance, db, run_settings) >= 2
    assert ledger.get_job(db, ended).status == "succeeded"
    gone = ledger.get_job(db, vanished)
    # Transient, with attempts left (WORKER_MAX_ATTEMPTS=2): pending again, for attempt 2.
    assert gone.status == "pending" and "no longer exists" in (gone.error or "")

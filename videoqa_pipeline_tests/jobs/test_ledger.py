"""The ledger and the job sensor against real PostgreSQL servers (embedded with pgvector, Debian's without)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline.definitions import VIDEO_PIPELINE_JOB, build_definitions
from videoqa_pipeline.defs.sensors.job_sensor import build_job_sensor, evaluate_job_tick
from videoqa_pipeline.run_tags import JOB_ATTEMPT_TAG, JOB_ID_TAG
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline_tests.jobs.conftest import LedgerDatabase


def _psql(url: str, sql: str) -> str:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed (apt-get install postgresql-client)")
    done = subprocess.run(
        [psql, url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def _tick(
    ledger_db: LedgerDatabase, settings: Settings, instance: dg.DagsterInstance
) -> dg.SensorResult | dg.SkipReason:
    """Evaluate the real sensor definition, with its resource, as the daemon would."""
    sensor = build_job_sensor(settings, VIDEO_PIPELINE_JOB)
    context = dg.build_sensor_context(instance=instance, resources={"database": ledger_db.resource()})
    result = sensor(context)
    assert isinstance(result, dg.SensorResult | dg.SkipReason)
    return result


def _status(ledger_db: LedgerDatabase, job_id: int) -> str:
    return ledger.get_job(ledger_db.database, job_id).status


def test_a_plain_psql_insert_is_a_complete_job(
    ledger_db: LedgerDatabase, job_settings: Settings, instance: dg.DagsterInstance, tiny_video: Path
) -> None:
    job_id = int(
        _psql(ledger_db.url, f"INSERT INTO videoqa_jobs (source_uri) VALUES ('{tiny_video}') RETURNING id")
    )
    options_job = int(
        _psql(
            ledger_db.url,
            "INSERT INTO videoqa_jobs (source_uri, video_id, options) "
            f"""VALUES ('file://{tiny_video}', 'my-video', '{{"max_frames_per_video": 3}}') RETURNING id""",
        )
    )
    result = _tick(ledger_db, job_settings, instance)
    assert isinstance(result, dg.SensorResult)
    requests = {int(r.tags[JOB_ID_TAG]): r for r in result.run_requests or []}
    assert sorted(requests) == [job_id, options_job]
    first, second = requests[job_id], requests[options_job]
    assert first.run_key == f"job-{job_id}-attempt-1" and first.tags[JOB_ATTEMPT_TAG] == "1"
    derived = ledger.get_job(ledger_db.database, job_id).video_id
    assert derived is not None and derived.startswith("tiny-") and first.partition_key == derived
    assert second.partition_key == "my-video"
    # Settings give the defaults (MAX_FRAMES_PER_VIDEO=7), the job's options override them.
    assert first.run_config["resources"]["pipeline_config"]["config"]["max_frames_per_video"] == 7
    assert second.run_config["resources"]["pipeline_config"]["config"]["max_frames_per_video"] == 3
    assert second.run_config["resources"]["pipeline_config"]["config"]["enable_transcription"] is False
    added = [key for request in result.dynamic_partitions_requests or [] for key in request.partition_keys]
    assert sorted(added) == sorted([derived, "my-video"])
    assert {_status(ledger_db, job_id), _status(ledger_db, options_job)} == {"queued"}
    assert ledger.get_job(ledger_db.database, job_id).attempts == 1


def test_duplicate_deliveries_are_recorded_once(ledger_db: LedgerDatabase, tiny_video: Path) -> None:
    request = ledger.JobRequest(str(tiny_video), source_kind="sqs", external_id="msg-1")
    first = ledger.submit_job(ledger_db.database, request)
    again = ledger.submit_job(ledger_db.database, request)
    assert first.created and not again.created and again.job_id == first.job_id
    # A producer inserting the same natural key directly is refused by the unique constraint.
    with pytest.raises(subprocess.CalledProcessError):
        _psql(
            ledger_db.url,
            f"INSERT INTO videoqa_jobs (source_uri, source_kind, external_id) VALUES ('{tiny_video}', 'sqs', 'msg-1')",
        )
    rejected = ledger.record_rejected_job(
        ledger_db.database, source_kind="sqs", external_id="msg-2", raw_body="{not json", error="not JSON"
    )
    assert ledger.record_rejected_job(
        ledger_db.database, source_kind="sqs", external_id="msg-2", raw_body="{not json", error="not JSON"
    ) == ledger.SubmittedJob(rejected.job_id, "", created=False)
    assert _psql(ledger_db.url, "SELECT count(*) FROM videoqa_jobs") == "2"
    assert _status(ledger_db, rejected.job_id) == "failed"


def test_bad_rows_end_failed_with_a_clear_error_and_others_run(
    ledger_db: LedgerDatabase, job_settings: Settings, instance: dg.DagsterInstance, tiny_video: Path
) -> None:
    rows = {
        "missing": "('/nowhere/gone.mp4', '{}')",
        "scheme": "('ftp://example.org/a.mp4', '{}')",
        "empty": "('', '{}')",
        "option": f"""('{tiny_video}', '{{"max_frames_per_video": 0}}')""",
        "unknown": f"""('{tiny_video}', '{{"colour": "red"}}')""",
        "good": f"('{tiny_video}', '{{}}')",
    }
    ids = {
        name: int(
            _psql(
                ledger_db.url, f"INSERT INTO videoqa_jobs (source_uri, options) VALUES {values} RETURNING id"
            )
        )
        for name, values in rows.items()
    }
    bad_id = int(
        _psql(
            ledger_db.url,
            f"INSERT INTO videoqa_jobs (source_uri, video_id) VALUES ('{tiny_video}', 'a,b') RETURNING id",
        )
    )
    result = _tick(ledger_db, job_settings, instance)
    assert isinstance(result, dg.SensorResult)
    assert [int(r.tags[JOB_ID_TAG]) for r in result.run_requests or []] == [ids["good"]]
    errors = {name: ledger.get_job(ledger_db.database, job_id).error or "" for name, job_id in ids.items()}
    assert "/nowhere/gone.mp4" in errors["missing"] and "not found" in errors["missing"]
    assert "unsupported scheme 'ftp'" in errors["scheme"]
    assert "source_uri is empty" in errors["empty"]
    assert "max_frames_per_video" in errors["option"] and "greater than or equal to 1" in errors["option"]
    assert "'colour'" in errors["unknown"]
    assert "not allowed" in (ledger.get_job(ledger_db.database, bad_id).error or "")
    for name in ("missing", "scheme", "empty", "option", "unknown"):
        job = ledger.get_job(ledger_db.database, ids[name])
        assert job.status == "failed" and job.failed_step == "intake" and job.transient is False, name


def test_backpressure_caps_queued_and_running_jobs(
    ledger_db: LedgerDatabase, jobs_home: Path, instance: dg.DagsterInstance, tiny_video: Path
) -> None:
    settings = Settings.from_env({"VIDEOQA_HOME": str(jobs_home), "VIDEOQA_MAX_QUEUED_RUNS": "2"}).validate()
    ids = [ledger.submit_job(ledger_db.database, ledger.JobRequest(str(tiny_video))).job_id for _ in range(5)]
    first = _tick(ledger_db, settings, instance)
    assert isinstance(first, dg.SensorResult)
    assert [int(r.tags[JOB_ID_TAG]) for r in first.run_requests or []] == ids[:2]
    # The runs exist: the next tick links them instead of asking again, and the cap holds.
    for request in first.run_requests or []:
        run = instance.add_run(
            dg.DagsterRun(job_name=VIDEO_PIPELINE_JOB, run_id=f"run-{request.run_key}", tags=request.tags)
        )
        assert run is not None
    blocked = _tick(ledger_db, settings, instance)
    assert isinstance(blocked, dg.SkipReason) and "backpressure" in (blocked.skip_message or "")
    assert ledger.get_job(ledger_db.database, ids[0]).run_id == f"run-job-{ids[0]}-attempt-1"
    assert ledger.mark_running(ledger_db.database, ids[0], 1, f"run-job-{ids[0]}-attempt-1") == "running"
    assert ledger.mark_succeeded(ledger_db.database, ids[0], 1, f"run-job-{ids[0]}-attempt-1")
    after = _tick(ledger_db, settings, instance)
    assert isinstance(after, dg.SensorResult)
    assert [int(r.tags[JOB_ID_TAG]) for r in after.run_requests or []] == [ids[2]]


def test_a_crash_after_queuing_loses_nothing_and_runs_nothing_twice(
    ledger_db: LedgerDatabase, job_settings: Settings, instance: dg.DagsterInstance, tiny_video: Path
) -> None:
    ids = [ledger.submit_job(ledger_db.database, ledger.JobRequest(str(tiny_video))).job_id for _ in range(3)]
    definitions = build_definitions(job_settings)
    downstream: dict[str, list[dg.AssetKey]] = {}
    context = dg.build_sensor_context(instance=instance)
    lost = evaluate_job_tick(context, ledger_db.database, job_settings, downstream)
    assert isinstance(lost, dg.SensorResult)  # ... and the daemon dies before creating any run.
    # Only the first job's run got created before the crash.
    created = (lost.run_requests or [])[0]
    instance.add_run(dg.DagsterRun(job_name=VIDEO_PIPELINE_JOB, run_id="created-run", tags=created.tags))
    del definitions
    again = evaluate_job_tick(context, ledger_db.database, job_settings, downstream)
    assert isinstance(again, dg.SensorResult)
    resent = sorted((r.run_key for r in again.run_requests or []), key=str)
    assert resent == sorted(f"job-{job_id}-attempt-1" for job_id in ids[1:])
    assert ledger.get_job(ledger_db.database, ids[0]).run_id == "created-run"
    assert all(_status(ledger_db, job_id) == "queued" for job_id in ids)


def test_write_back_is_idempotent_and_retries_only_transient_failures(
    ledger_db: LedgerDatabase, tiny_video: Path
) -> None:
    db = ledger_db.database
    job_id = ledger.submit_job(db, ledger.JobRequest(str(tiny_video))).job_id
    for attempt in (1, 2):
        (claimed,) = ledger.claim_pending_jobs(db, 10).queued
        assert claimed.attempts == attempt
        assert ledger.mark_running(db, job_id, attempt, f"r{attempt}") == "running"
        assert ledger.mark_running(db, job_id, attempt, f"r{attempt}") == "running"
        status = ledger.mark_failed(
            db,
            job_id,
            attempt,
            f"r{attempt}",
            error="HTTP 503",
            failed_step="transcript",
            transient=True,
            max_attempts=2,
        )
        assert status == ("pending" if attempt == 1 else "failed")
        # The same event delivered again (hook, then sensor) changes nothing.
        assert (
            ledger.mark_failed(
                db,
                job_id,
                attempt,
                f"r{attempt}",
                error="x",
                failed_step=None,
                transient=True,
                max_attempts=2,
            )
            is None
        )
    job = ledger.get_job(db, job_id)
    assert (job.status, job.failed_step, job.error, job.attempts) == ("failed", "transcript", "HTTP 503", 2)
    # A late success of an old attempt's run cannot resurrect or overwrite anything.
    assert not ledger.mark_succeeded(db, job_id, 1, "r1")
    requeued = ledger.requeue_job(db, job_id)
    assert requeued.status == "pending" and requeued.error is None
    (claimed,) = ledger.claim_pending_jobs(db, 10).queued
    assert claimed.run_key == f"job-{job_id}-attempt-3"
    ledger.mark_running(db, job_id, 3, "r3")
    assert (
        ledger.mark_failed(
            db,
            job_id,
            3,
            "r3",
            error="not a video",
            failed_step="source_video",
            transient=False,
            max_attempts=5,
        )
        == "failed"
    )
    with pytest.raises(ledger.JobStateError, match="nothing to cancel"):
        ledger.cancel_job(db, job_id)
    other = ledger.submit_job(db, ledger.JobRequest(str(tiny_video))).job_id
    ledger.claim_pending_jobs(db, 10)
    assert ledger.mark_succeeded(db, other, 1, "s1", {"source_video": 0.5})
    assert ledger.mark_succeeded(
        db, other, 1, "s1", {"source_video": 0.5, "scenes": 0.2}
    )  # sensor adds durations
    assert ledger.get_job(db, other).step_seconds == {"source_video": 0.5, "scenes": 0.2}
    with pytest.raises(ledger.JobStateError, match="--force"):
        ledger.requeue_job(db, other)


def test_the_pending_query_uses_the_status_index(ledger_db: LedgerDatabase) -> None:
    with ledger_db.database.connection() as conn:
        conn.execute(
            "INSERT INTO videoqa_jobs (source_uri, status) "
            "SELECT 's3://bucket/' || i || '.mp4', CASE WHEN i % 100 = 0 THEN 'pending' ELSE 'succeeded' END "
            "FROM generate_series(1, 20000) AS i"
        )
        conn.execute("ANALYZE videoqa_jobs")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN SELECT id FROM videoqa_jobs WHERE status = 'pending' ORDER BY id LIMIT 50 FOR UPDATE SKIP LOCKED"
            )
        )
    assert "videoqa_jobs_status_id_idx" in plan and "Seq Scan" not in plan, plan


def test_parse_job_message_explains_what_is_wrong() -> None:
    request = ledger.parse_job_message(
        json.dumps({"source_uri": "s3://b/k.mp4", "video_id": "k", "options": {"max_frames_per_video": "4"}})
    )
    assert request.options == {"max_frames_per_video": 4} and request.video_id == "k"
    for body, reason in [
        (b"\xff\xfe", "not UTF-8"),
        ("{", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ("{}", "no source_uri"),
        ('{"source_uri": "a.mp4", "colour": 1}', "unknown field"),
        ('{"source_uri": "a.mp4", "video_id": "a/b"}', "not allowed"),
        ('{"source_uri": "a.mp4", "options": {"enable_embeddings": "maybe"}}', "enable_embeddings"),
        ('{"source_uri": "a.mp4", "callback_url": "ftp://x"}', "callback_url"),
    ]:
        with pytest.raises(ledger.JobMessageError, match=reason):
            ledger.parse_job_message(body)


def test_re_executing_a_failed_run_takes_the_job_over(ledger_db: LedgerDatabase, tiny_video: Path) -> None:
    db = ledger_db.database
    job_id = ledger.submit_job(db, ledger.JobRequest(str(tiny_video))).job_id
    ledger.claim_pending_jobs(db, 10)
    ledger.mark_running(db, job_id, 1, "first")
    ledger.mark_failed(
        db, job_id, 1, "first", error="bad", failed_step="scenes", transient=False, max_attempts=3
    )
    # A re-execution carries the old attempt's tags plus its parent run.
    assert ledger.mark_running(db, job_id, 1, "unrelated", parent_run_id="someone-else") == "failed"
    assert ledger.mark_running(db, job_id, 1, "second", parent_run_id="first") == "running"
    job = ledger.get_job(db, job_id)
    assert (job.attempts, job.run_id, job.error) == (2, "second", None)
    assert ledger.mark_succeeded(db, job_id, 1, "second")
    assert ledger.get_job(db, job_id).status == "succeeded"

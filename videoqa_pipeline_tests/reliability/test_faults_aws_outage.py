"""The S3/SQS endpoint is unreachable for a few seconds: transfers and receives are retried with
backoff and then succeed; every job ends once, with one set of rows and one set of objects.

The endpoint is moto's server on a fixed loopback port, stopped (port closed: connection
refused) and started again on the same port. It runs in this process, so its buckets, objects and
queues survive the restart, like a real endpoint that was unreachable for a while (a separate
moto process would lose them). The retries are seen in botocore's own retry log
(``botocore.retries.standard``, the "standard" mode the project configures) and, when botocore
gives up first, in the step's retry events or the sensor's skipped tick.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from videoqa_pipeline import aws, media
from videoqa_pipeline.definitions import build_definitions
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.defs.sensors.sqs_sensor import build_sqs_sensor
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline_tests.jobs.conftest import (  # noqa: F401 - fixtures
    QUIET,
    LedgerDatabase,
    embedded_admin_url,
    embedded_db,
    instance,
    jobs_home,
)
from videoqa_pipeline_tests.jobs.test_runs import _run_job
from videoqa_pipeline_tests.pipeline.dagster_dev_server import free_port
from videoqa_pipeline_tests.reliability.fault_support import RestartableMoto, as_url, database_rows

pytest.importorskip("moto.server", reason="moto[server] is not installed")

REGION = "us-east-1"
OUTAGE_SECONDS = 4.0
RETRY_LOGGER = "botocore.retries.standard"


@pytest.fixture()
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[RestartableMoto]:
    server = RestartableMoto(free_port())
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": server.endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    try:
        yield server
    finally:
        server.start()  # a failed test may leave it down; stop() needs it up
        server.stop()


@pytest.fixture()
def s3(moto: RestartableMoto) -> Any:
    return aws.client("s3", aws.AwsConfig(region=REGION, endpoint_url=moto.endpoint))


@pytest.fixture()
def retry_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=RETRY_LOGGER)
    return caplog


def _retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The delays botocore chose before each retry, from its log."""
    marker = "retrying request after delay of: "
    return [
        float(record.getMessage().split(marker)[1])
        for record in caplog.records
        if record.name == RETRY_LOGGER and marker in record.getMessage()
    ]


def _settings(db: LedgerDatabase, home: Path, moto: RestartableMoto, **env: str) -> Settings:
    return Settings.from_env(
        {
            **QUIET,
            "DATABASE_URL": as_url(db.url),
            "VIDEOQA_HOME": str(home),
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": moto.endpoint,
            "WORKER_MAX_ATTEMPTS": "3",
            **env,
        }
    ).validate()


def test_s3_unreachable_during_the_download_and_uploads_then_back(
    moto: RestartableMoto,
    s3: Any,
    retry_log: pytest.LogCaptureFixture,
    embedded_db: LedgerDatabase,  # noqa: F811
    jobs_home: Path,  # noqa: F811
    instance: dg.DagsterInstance,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = f"videoqa-outage-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    clip = media.make_sample_video(tmp_path / "clip.mp4", scene_seconds=(1.0, 1.0), audio=False).path
    s3.upload_file(str(clip), bucket, "uploads/clip.mp4")
    settings = _settings(embedded_db, jobs_home, moto, STORAGE_TYPE="hybrid", AWS_S3_BUCKET=bucket)
    monkeypatch.setenv("DATABASE_URL", as_url(embedded_db.url))
    definitions = build_definitions(settings)
    video_id = "s3-outage"
    job_id = ledger.submit_job(
        embedded_db.database, ledger.JobRequest(f"s3://{bucket}/uploads/clip.mp4", video_id=video_id)
    ).job_id

    started = time.monotonic()
    comeback = moto.outage(OUTAGE_SECONDS)  # the run's first S3 call (the source download) meets it
    _job, result = _run_job(job_id, definitions, settings, embedded_db.database, instance)
    comeback.join(timeout=30)
    elapsed = time.monotonic() - started

    delays = _retry_delays(retry_log)
    step_retries = [
        event.step_key
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    print(
        f"\nS3 outage {OUTAGE_SECONDS:.0f} s: botocore retry delays {[round(d, 2) for d in delays]}, step retries {step_retries}"
    )
    assert result.success, [event.message for event in result.all_events if event.is_failure]
    assert elapsed >= OUTAGE_SECONDS, "the run cannot have finished while S3 was down"
    assert len(delays) >= 2, "botocore did not retry the unreachable endpoint"
    assert set(step_retries) <= {"source_video"}, step_retries
    job = ledger.get_job(embedded_db.database, job_id)
    assert (job.status, job.attempts, job.error) == ("succeeded", 1, None)
    rows = database_rows(embedded_db.database, video_id)
    assert rows["source_video"] == rows["normalized_video"] == 1 and rows["keyframes"] == 2, rows
    keys = sorted(
        item["Key"]
        for item in s3.list_objects_v2(Bucket=bucket, Prefix=f"{settings.s3_prefix}{video_id}/").get(
            "Contents", []
        )
    )
    stored = [key.split(f"{video_id}/", 1)[1] for key in keys]
    assert stored == [
        "keyframes/scene-00000.jpg",
        "keyframes/scene-00001.jpg",
        "normalized/video.mp4",
        "source/original.mp4",
    ], stored


def _sqs_tick(settings: Settings, database: DatabaseResource, instance: dg.DagsterInstance) -> str:  # noqa: F811
    sensor = build_sqs_sensor(settings)
    result = sensor(dg.build_sensor_context(instance=instance, resources={"database": database}))
    assert isinstance(result, dg.SkipReason)
    return str(result.skip_message)


def test_sqs_unreachable_during_a_receive_then_back(
    moto: RestartableMoto,
    retry_log: pytest.LogCaptureFixture,
    embedded_db: LedgerDatabase,  # noqa: F811
    jobs_home: Path,  # noqa: F811
    instance: dg.DagsterInstance,  # noqa: F811
) -> None:
    sqs = aws.client("sqs", aws.AwsConfig(region=REGION, endpoint_url=moto.endpoint))
    queue_url = sqs.create_queue(QueueName=f"videoqa-outage-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sent = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps({"source_uri": "s3://uploads/talk.mp4", "video_id": "sqs-outage"}),
    )["MessageId"]
    settings = _settings(
        embedded_db, jobs_home, moto, JOB_SOURCE_TYPE="sqs", AWS_SQS_QUEUE_URL=queue_url, SQS_WAIT_TIME="1"
    )
    database = DatabaseResource(database_url=as_url(embedded_db.url), home=str(jobs_home), pool_size=3)

    comeback = moto.outage(OUTAGE_SECONDS)
    ticks = [_sqs_tick(settings, database, instance)]
    comeback.join(timeout=30)
    # botocore's retries usually outlast the outage; when they do not, the tick is skipped with
    # the reason and the next one receives the message.
    while len(ticks) < 3 and not ledger.list_jobs(embedded_db.database, limit=10):
        ticks.append(_sqs_tick(settings, database, instance))
    ticks.append(_sqs_tick(settings, database, instance))  # nothing left: no second job
    delays = _retry_delays(retry_log)
    print(
        f"\nSQS outage {OUTAGE_SECONDS:.0f} s: botocore retry delays {[round(d, 2) for d in delays]}, ticks {ticks}"
    )
    assert len(delays) >= 2, "botocore did not retry the unreachable endpoint"
    jobs = ledger.list_jobs(embedded_db.database, limit=10)
    assert [(job.external_id, job.video_id, job.status) for job in jobs] == [
        (sent, "sqs-outage", "pending")
    ], jobs
    left = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert left == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}, left

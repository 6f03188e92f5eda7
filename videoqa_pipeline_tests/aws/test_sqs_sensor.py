"""The SQS sensor against moto over HTTP, writing to a real (embedded) PostgreSQL ledger."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest

from videoqa_pipeline.definitions import VIDEO_PIPELINE_JOB, build_definitions
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.defs.sensors.job_sensor import build_job_sensor
from videoqa_pipeline.defs.sensors.sqs_sensor import (
    SQS_SENSOR_NAME,
    build_sqs_sensor,
    drain_queue,
    message_requests,
)
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database
from videoqa_pipeline.storage.errors import DatabaseUnavailableError
from videoqa_pipeline_tests.aws.conftest import aws_settings


class Crash(Exception):
    """Stands for the worker dying between the ledger commit and the delete."""


def _s3_event(bucket: str, *keys: str, event: str = "ObjectCreated:Put") -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": event,
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}},
                }
                for key in keys
            ]
        }
    )


@pytest.fixture()
def queue(sqs: Any) -> str:
    """A fresh queue with a short visibility timeout and a dead-letter queue after 2 receives."""
    name = f"videoqa-jobs-{uuid.uuid4().hex[:10]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return str(
        sqs.create_queue(
            QueueName=name,
            Attributes={
                "VisibilityTimeout": "1",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"}),
            },
        )["QueueUrl"]
    )


def _dlq(queue_url: str) -> str:
    return f"{queue_url}-dlq"


def _settings(home: Path, endpoint: str, queue_url: str, **env: str) -> Settings:
    return aws_settings(
        home,
        endpoint,
        JOB_SOURCE_TYPE="sqs",
        AWS_SQS_QUEUE_URL=queue_url,
        SQS_MAX_MESSAGES="10",
        SQS_WAIT_TIME="1",
        **env,
    )


def _database(settings: Settings) -> DatabaseResource:
    return DatabaseResource(home=str(settings.home))


def _messages_left(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _jobs_of(database: Database, message_ids: set[str]) -> list[ledger.Job]:
    with database.connection() as connection:
        rows = connection.execute(
            "SELECT id FROM videoqa_jobs WHERE source_kind = 'sqs' AND split_part(external_id, ':', 1) = ANY(%s) ORDER BY id",
            (list(message_ids),),
        ).fetchall()
    return [ledger.get_job(database, int(row[0])) for row in rows]


def _raw_body(database: Database, job_id: int) -> str | None:
    with database.connection() as connection:
        row = connection.execute("SELECT raw_body FROM videoqa_jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else row[0]


def test_message_kinds_are_decoded() -> None:
    [job] = message_requests("m1", json.dumps({"source_uri": "s3://b/v.mp4", "video_id": "v1"}))
    assert (job.source_uri, job.video_id, job.source_kind, job.external_id) == (
        "s3://b/v.mp4",
        "v1",
        "sqs",
        "m1",
    )
    first, second = message_requests("m2", _s3_event("up", "a/My+Video%281%29.mp4", "b.mov"))
    assert first.source_uri == "s3://up/a/My Video(1).mp4" and first.external_id == "m2:0"
    assert second.source_uri == "s3://up/b.mov" and second.external_id == "m2:1"
    assert message_requests("m3", json.dumps({"Event": "s3:TestEvent", "Bucket": "up"})) == []
    assert message_requests("m4", _s3_event("up", "gone.mp4", event="ObjectRemoved:Delete")) == []
    sns = json.dumps({"Type": "Notification", "Message": _s3_event("up", "via-sns.mp4")})
    assert [job.source_uri for job in message_requests("m5", sns)] == ["s3://up/via-sns.mp4"]
    for body in ("not json", "[1, 2]", json.dumps({"video": "x"}), json.dumps({"Records": "nope"})):
        with pytest.raises(ledger.JobMessageError):
            message_requests("bad", body)


def test_sensor_moves_messages_into_the_ledger_then_deletes_them(
    aws_home: Path, moto_endpoint: str, sqs: Any, s3: Any, bucket: str, queue: str, tmp_path: Path
) -> None:
    settings = _settings(aws_home, moto_endpoint, queue)
    s3.put_object(Bucket=bucket, Key="uploads/first clip.mp4", Body=b"x")
    s3.put_object(Bucket=bucket, Key="uploads/second.mp4", Body=b"y")
    bodies = {
        "json": json.dumps(
            {
                "source_uri": f"s3://{bucket}/uploads/second.mp4",
                "video_id": "sqsjson",
                "options": {"max_frames_per_video": 3},
            }
        ),
        "event": _s3_event(bucket, "uploads/first+clip.mp4", "uploads/second.mp4"),
        "test": json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}),
        "malformed": "{this is not json",
    }
    ids = {
        kind: sqs.send_message(QueueUrl=queue, MessageBody=body)["MessageId"] for kind, body in bodies.items()
    }

    definitions = build_definitions(settings)
    sensor = definitions.get_sensor_def(SQS_SENSOR_NAME)
    database = _database(settings)
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, resources={"database": database}))
        assert isinstance(result, dg.SkipReason)
        assert "4 message(s): 3 new job(s), 1 rejected, 1 ignored, 4 deleted" in str(result.skip_message)
        assert _messages_left(sqs, queue) == 0

        db = database.get()
        jobs = _jobs_of(db, set(ids.values()))
        by_external = {job.external_id: job for job in jobs}
        assert set(by_external) == {ids["json"], f"{ids['event']}:0", f"{ids['event']}:1", ids["malformed"]}
        json_job = by_external[ids["json"]]
        assert (json_job.status, json_job.video_id, json_job.options) == (
            "pending",
            "sqsjson",
            {"max_frames_per_video": 3},
        )
        assert by_external[f"{ids['event']}:0"].source_uri == f"s3://{bucket}/uploads/first clip.mp4"
        rejected = by_external[ids["malformed"]]
        assert rejected.status == "failed" and "not valid JSON" in (rejected.error or "")
        assert _raw_body(db, rejected.id) == bodies["malformed"]

        # The ledger's job sensor turns the new jobs into runs.
        job_sensor = build_job_sensor(settings, VIDEO_PIPELINE_JOB)
        requested = job_sensor(dg.build_sensor_context(instance=instance, resources={"database": database}))
        assert isinstance(requested, dg.SensorResult)
        requested_jobs = {int(request.tags["videoqa/job_id"]) for request in requested.run_requests or []}
        assert {job.id for job in jobs if job.status == "pending"} <= requested_jobs


def test_crash_between_commit_and_delete_redelivers_without_duplicates(
    aws_home: Path, moto_endpoint: str, sqs: Any, queue: str
) -> None:
    settings = _settings(aws_home, moto_endpoint, queue)
    database = _database(settings).get()
    message_id = sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"source_uri": "s3://b/crash.mp4"}))[
        "MessageId"
    ]

    def crash(_messages: list[dict[str, Any]]) -> None:
        raise Crash

    with pytest.raises(Crash):
        drain_queue(sqs, queue, database, max_messages=10, wait_seconds=1, before_delete=crash)
    [job] = _jobs_of(database, {message_id})  # committed before the crash
    assert _messages_left(sqs, queue) == 1  # ... and still on the queue

    time.sleep(1.5)  # the visibility timeout expires: SQS re-delivers
    report = drain_queue(sqs, queue, database, max_messages=10, wait_seconds=2)
    assert report.received == 1 and report.deleted == 1
    assert [(entry.job_id, entry.created) for entry in report.jobs] == [(job.id, False)]
    assert [entry.id for entry in _jobs_of(database, {message_id})] == [job.id]
    assert _messages_left(sqs, queue) == 0


def test_ledger_outage_keeps_messages_and_the_redrive_policy_dead_letters_them(
    aws_home: Path, moto_endpoint: str, sqs: Any, queue: str
) -> None:
    unreachable = get_database(
        DatabaseSettings(
            url="postgresql://videoqa@127.0.0.1:9/none", home=aws_home, pool_size=1, timeout_seconds=1
        )
    )
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"source_uri": "s3://b/outage.mp4"}))
    for _receive in range(2):
        with pytest.raises((DatabaseUnavailableError, psycopg.OperationalError)):
            drain_queue(sqs, queue, unreachable, max_messages=10, wait_seconds=2)
        time.sleep(1.5)
    # After maxReceiveCount receives the queue itself moves the message to its DLQ.
    assert (
        drain_queue(
            sqs, queue, _database(aws_settings(aws_home, moto_endpoint)).get(), wait_seconds=1
        ).received
        == 0
    )
    dead = sqs.receive_message(QueueUrl=_dlq(queue), MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    )
    assert [json.loads(message["Body"])["source_uri"] for message in dead] == ["s3://b/outage.mp4"]
    unreachable.close()


def test_unreadable_queue_is_reported_not_raised(aws_home: Path, moto_endpoint: str) -> None:
    settings = _settings(aws_home, moto_endpoint, f"{moto_endpoint}/123456789012/videoqa-no-such-queue")
    sensor = build_sqs_sensor(settings)
    with dg.instance_for_test() as instance:
        result = sensor(
            dg.build_sensor_context(instance=instance, resources={"database": _database(settings)})
        )
    assert isinstance(result, dg.SkipReason)
    assert "videoqa-no-such-queue" in str(result.skip_message) and "AWS_SQS_QUEUE_URL" in str(
        result.skip_message
    )


def test_every_deployment_has_the_same_sensors_and_only_enabled_ones_run(
    aws_home: Path, moto_endpoint: str, queue: str
) -> None:
    with_sqs = build_definitions(_settings(aws_home, moto_endpoint, queue)).sensors or []
    default = build_definitions(aws_settings(aws_home, moto_endpoint)).sensors or []
    assert {sensor.name for sensor in with_sqs} == {sensor.name for sensor in default}
    status = {sensor.name: sensor.default_status for sensor in with_sqs}
    assert status[SQS_SENSOR_NAME] == dg.DefaultSensorStatus.RUNNING
    assert status["job_sensor"] == dg.DefaultSensorStatus.RUNNING
    stopped = {sensor.name: sensor.default_status for sensor in default}
    assert stopped[SQS_SENSOR_NAME] == dg.DefaultSensorStatus.STOPPED


def test_a_tick_of_the_sqs_sensor_where_sqs_is_not_enabled_names_the_setting(
    aws_home: Path, moto_endpoint: str
) -> None:
    settings = aws_settings(aws_home, moto_endpoint)
    with dg.instance_for_test() as instance:
        result = build_sqs_sensor(settings)(
            dg.build_sensor_context(instance=instance, resources={"database": _database(settings)})
        )
    assert isinstance(result, dg.SkipReason)
    assert "JOB_SOURCE_TYPE" in str(result.skip_message)

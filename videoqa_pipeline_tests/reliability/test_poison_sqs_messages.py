"""Every SQS message ends as a job or as a failed job keeping its raw body, whatever it holds.

The hostile bodies are the ones Python's ``json`` trips on, or decodes into values PostgreSQL
refuses: nesting thousands deep, ``NaN``/``Infinity`` and numbers beyond a double, integers of
thousands of digits, lone UTF-16 surrogate escapes (in a value and in a key). They arrive in one
batch with a valid job message, through the real SQS protocol (moto's server) and the real SQS
sensor, and every message of the batch must be recorded and deleted from the queue.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import dagster as dg
import pytest

from videoqa_pipeline import aws
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.defs.sensors.sqs_sensor import build_sqs_sensor, drain_queue
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline_tests.reliability.job_harness import JobHarness

DEPTH = 5000

#: name -> (body, a phrase of the reason the failed job must carry)
POISON_BODIES: dict[str, tuple[str, str]] = {
    "deep_options": (
        '{"source_uri": "s3://b/deep.mp4", "options": ' + "[" * DEPTH + "]" * DEPTH + "}",
        "deeper",
    ),
    "deep_top": ("[" * DEPTH + "]" * DEPTH, "deeper"),
    "nan": ('{"source_uri": "s3://b/nan.mp4", "options": {"max_frames_per_video": NaN}}', "NaN"),
    "infinity": ('{"source_uri": "s3://b/inf.mp4", "video_id": "v", "extra": -Infinity}', "Infinity"),
    "beyond_double": (
        '{"source_uri": "s3://b/big.mp4", "options": {"max_frames_per_video": 1e999}}',
        "double",
    ),
    "huge_integer": ('{"source_uri": "s3://b/int.mp4", "video_id": ' + "9" * 5000 + "}", "digits"),
    "surrogate_value": ('{"source_uri": "s3://b/\\ud800.mp4"}', "surrogate"),
    "surrogate_key": ('{"source_uri": "s3://b/k.mp4", "options": {"\\udfff": 1}}', "surrogate"),
    "sns_deep": (
        json.dumps({"Type": "Notification", "Message": "[" * DEPTH + "]" * DEPTH}),
        "deeper",
    ),
}


@pytest.fixture()
def sqs(moto_endpoint: str) -> Any:
    return aws.client("sqs", aws.AwsConfig(region="us-east-1", endpoint_url=moto_endpoint))


@pytest.fixture()
def queue(sqs: Any) -> str:
    return str(sqs.create_queue(QueueName=f"poison-{uuid.uuid4().hex[:8]}")["QueueUrl"])


def _send_batch(sqs: Any, queue: str, bodies: dict[str, str]) -> dict[str, str]:
    """Send ``bodies`` (up to 10) in one batch; returns name -> message ID."""
    entries = [{"Id": name, "MessageBody": body} for name, body in bodies.items()]
    sent = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    assert not sent.get("Failed"), sent.get("Failed")
    return {entry["Id"]: entry["MessageId"] for entry in sent["Successful"]}


def _left(sqs: Any, queue: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def _job_of(harness: JobHarness, message_id: str) -> tuple[ledger.Job, str | None]:
    with harness.database.connection() as conn:
        row = conn.execute(
            "SELECT id, raw_body FROM videoqa_jobs WHERE source_kind = 'sqs' AND external_id = %s",
            (message_id,),
        ).fetchone()
    assert row is not None, f"message {message_id} left no job"
    return ledger.get_job(harness.database, int(row[0])), row[1]


def test_a_batch_with_poison_messages_records_every_message(
    harness: JobHarness, moto_endpoint: str, sqs: Any, queue: str
) -> None:
    bodies = {name: body for name, (body, _) in POISON_BODIES.items()}
    bodies["valid"] = json.dumps({"source_uri": "s3://b/valid.mp4", "video_id": "valid-in-poison-batch"})
    ids = _send_batch(sqs, queue, bodies)
    settings = Settings.from_env(
        {
            **harness.env,
            "JOB_SOURCE_TYPE": "sqs",
            "AWS_SQS_QUEUE_URL": queue,
            "SQS_MAX_MESSAGES": "10",
            "SQS_WAIT_TIME": "0",
            "AWS_ENDPOINT_URL": moto_endpoint,
        }
    ).validate()
    sensor = build_sqs_sensor(settings)
    resource = DatabaseResource(database_url=settings.database_url, home=str(settings.home))
    with dg.instance_for_test() as instance:
        result = sensor(dg.build_sensor_context(instance=instance, resources={"database": resource}))

    assert isinstance(result, dg.SkipReason), result
    assert f"{len(bodies)} message(s): 1 new job(s), {len(POISON_BODIES)} rejected" in str(
        result.skip_message
    )
    assert _left(sqs, queue) == 0, "every message is recorded, so every message is deleted"
    valid, _ = _job_of(harness, ids["valid"])
    assert (valid.status, valid.video_id) == ("pending", "valid-in-poison-batch")
    for name, (body, reason) in POISON_BODIES.items():
        job, raw_body = _job_of(harness, ids[name])
        assert (job.status, job.failed_step, job.source_uri) == ("failed", None, ""), name
        assert reason in (job.error or ""), (name, job.error)
        assert len(job.error or "") < 600 and "Traceback" not in (job.error or ""), name
        assert raw_body == body, f"{name}: the raw body is kept as received"


def test_a_lone_surrogate_in_the_raw_body_is_stored_escaped(harness: JobHarness) -> None:
    """A body that reaches the sensor as a Python string with a lone surrogate (a non-AWS SQS server,
    a decoding bug upstream) is stored escaped: PostgreSQL refuses the character itself."""
    submitted = ledger.record_rejected_job(
        harness.database,
        source_kind="sqs",
        external_id=f"surrogate-{uuid.uuid4().hex[:8]}",
        raw_body='{"source_uri": "s3://b/\ud800.mp4", "nul": "\x00"}',
        error="a lone \udc00 surrogate in the reason too",
    )
    job = ledger.get_job(harness.database, submitted.job_id)
    with harness.database.connection() as conn:
        row = conn.execute("SELECT raw_body FROM videoqa_jobs WHERE id = %s", (job.id,)).fetchone()
    assert row is not None and row[0] == '{"source_uri": "s3://b/\\ud800.mp4", "nul": "\ufffd"}'
    assert job.status == "failed" and "\\udc00" in (job.error or "")


def test_drain_queue_records_poison_messages_one_by_one(
    harness: JobHarness, moto_endpoint: str, sqs: Any, queue: str
) -> None:
    """The same with one message per receive: the poison never takes a valid neighbour down."""
    names = ["nan", "valid", "surrogate_value", "deep_top"]
    bodies = {name: POISON_BODIES[name][0] for name in names if name != "valid"}
    bodies["valid"] = json.dumps({"source_uri": "s3://b/second-valid.mp4", "video_id": "second-valid"})
    ids = _send_batch(sqs, queue, bodies)
    report = drain_queue(sqs, queue, harness.database, max_messages=1, wait_seconds=0)
    assert (report.received, report.rejected, report.new_jobs, report.deleted) == (4, 3, 1, 4)
    assert _job_of(harness, ids["valid"])[0].status == "pending"

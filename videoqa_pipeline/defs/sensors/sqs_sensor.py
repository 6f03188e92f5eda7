"""The SQS sensor: messages on ``AWS_SQS_QUEUE_URL`` become jobs in the ledger, none lost, none twice.

Enabled when ``JOB_SOURCE_TYPE`` lists ``sqs``. It only *moves* messages into the ledger; the
ledger's job sensor turns jobs into runs. A message is one of:

* our JSON job message ``{source_uri, video_id?, options?, callback_url?, from_stage?}`` → one job,
  external ID = the SQS message ID;
* an S3 event notification (``{"Records": [{"eventSource": "aws:s3", ...}]}``, also wrapped in an
  SNS envelope) → one job per ``ObjectCreated`` record for ``s3://bucket/key``, external ID =
  ``<message ID>:<record index>``; ``s3:TestEvent`` and other record types are acknowledged and
  ignored;
* anything else → a **failed** job keeping the raw body and the reason
  (:func:`~videoqa_pipeline.storage.ledger.record_rejected_job`). Bodies are decoded by the
  project's one strict decoder (:func:`videoqa_pipeline.jsonsafe.decode_json`), so hostile JSON
  (nesting thousands deep, ``NaN``, numbers beyond a double, integers of thousands of digits,
  lone UTF-16 surrogates) is such a failed job too, and a raw body PostgreSQL could not store
  as it is (NUL, lone surrogates) is kept escaped. Whatever one message holds, it is recorded
  alone: the other messages of its batch are recorded and deleted as usual.

Delivery guarantees: a message's jobs are written and committed (one transaction) **before** the
message is deleted from the queue. A crash in between re-delivers it after the visibility timeout,
and the ledger's unique ``(source_kind, external_id)`` absorbs the duplicate. When the ledger
cannot be written the message is left on the queue, so the queue's own redrive policy moves a
message that keeps failing to its dead-letter queue. Each tick long-polls for at most
``SQS_WAIT_TIME`` seconds per receive and stops within :data:`TICK_BUDGET_SECONDS`, well inside
Dagster's sensor timeout.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote_plus

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError

from videoqa_pipeline import aws
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.defs.sensors.gates import default_status, skip_reason
from videoqa_pipeline.defs.sensors.job_sensor import TRANSIENT_DATABASE_ERRORS, sensor_interval_seconds
from videoqa_pipeline.fetch import SourcePolicy
from videoqa_pipeline.jsonsafe import JsonRefused, decode_json
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database

logger = logging.getLogger(__name__)

SQS_SENSOR_NAME = "sqs_sensor"
SOURCE_KIND = "sqs"
#: Wall-clock budget of one tick (Dagster cancels sensor evaluations after 60 s by default).
TICK_BUDGET_SECONDS = 40.0
#: Receives per tick at most: with SQS_MAX_MESSAGES=10, up to 200 messages per tick.
MAX_RECEIVES_PER_TICK = 20


class SqsSourceError(Exception):
    """The queue could not be read or acknowledged. ``permanent`` when no retry can fix it."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class DrainReport:
    """What one pass over the queue did.

    Attributes:
        received: Messages received.
        jobs: Jobs submitted (``created`` False when a re-delivery was absorbed).
        rejected: Messages recorded as failed jobs (undecodable).
        ignored: Messages acknowledged without a job (``s3:TestEvent``, non-create S3 events).
        deleted: Messages deleted from the queue.
        delete_failures: Messages whose delete failed (they will be re-delivered and absorbed).
    """

    received: int = 0
    jobs: list[ledger.SubmittedJob] = field(default_factory=list)
    rejected: int = 0
    ignored: int = 0
    deleted: int = 0
    delete_failures: int = 0

    @property
    def new_jobs(self) -> int:
        """Jobs recorded for the first time in this pass."""
        return sum(1 for job in self.jobs if job.created)


def _unwrap_sns(decoded: Any) -> Any:
    """S3 → SNS → SQS fan-out wraps the event in an SNS envelope whose ``Message`` is JSON text."""
    if isinstance(decoded, Mapping) and decoded.get("Type") == "Notification" and "Message" in decoded:
        message = decoded["Message"]
        if isinstance(message, str):
            try:
                return decode_json(message, what="the SNS envelope's Message")
            except JsonRefused as error:
                if message.lstrip()[:1] in ("{", "["):  # meant as JSON, and hostile or broken
                    raise ledger.JobMessageError(str(error)) from None
                return decoded
    return decoded


def _s3_event_requests(message_id: str, records: Sequence[Any]) -> list[ledger.JobRequest]:
    requests: list[ledger.JobRequest] = []
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ledger.JobMessageError(f"S3 event record {index} is not a JSON object")
        if record.get("eventSource") != "aws:s3" or not str(record.get("eventName", "")).startswith(
            "ObjectCreated"
        ):
            continue  # deletions, replication, lifecycle: nothing to process
        s3 = record.get("s3")
        bucket = s3.get("bucket", {}).get("name") if isinstance(s3, Mapping) else None
        key = s3.get("object", {}).get("key") if isinstance(s3, Mapping) else None
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            raise ledger.JobMessageError(
                f"S3 event record {index} ({record.get('eventName')}) has no s3.bucket.name / s3.object.key"
            )
        # Keys in S3 notifications are URL-encoded with '+' for spaces.
        requests.append(
            ledger.JobRequest(
                source_uri=f"s3://{bucket}/{unquote_plus(key)}",
                source_kind=SOURCE_KIND,
                external_id=f"{message_id}:{index}",
            )
        )
    return requests


def message_requests(message_id: str, body: str) -> list[ledger.JobRequest]:
    """The jobs a message asks for (empty for test events and non-create S3 events).

    Args:
        message_id: The SQS message ID (the jobs' external IDs derive from it).
        body: The message body.

    Returns:
        One request for a job message, one per ``ObjectCreated`` record for an S3 event.

    Raises:
        JobMessageError: the body is neither a valid job message nor an S3 event.
    """
    try:
        decoded = _unwrap_sns(decode_json(body, what="message"))
    except JsonRefused as error:
        raise ledger.JobMessageError(str(error)) from None
    if isinstance(decoded, Mapping):
        if decoded.get("Event") == "s3:TestEvent":
            return []
        records = decoded.get("Records")
        if records is not None:
            if not isinstance(records, list):
                raise ledger.JobMessageError("S3 event 'Records' must be a list")
            return _s3_event_requests(message_id, records)
    request = ledger.parse_job_message(decoded)
    return [replace(request, source_kind=SOURCE_KIND, external_id=message_id)]


def _reject(database: Database, message_id: str, body: str, report: DrainReport, error: str) -> None:
    job = ledger.record_rejected_job(
        database, source_kind=SOURCE_KIND, external_id=message_id, raw_body=body, error=error
    )
    report.rejected += 1
    logger.warning("SQS message %s rejected as job %d: %s", message_id, job.job_id, error[:300])


def _record(
    database: Database, message_id: str, body: str, report: DrainReport, policy: SourcePolicy | None
) -> None:
    """Write the message's jobs (or its rejection) and commit.

    Raises only when the ledger cannot be written (the message then stays on the queue). A
    message that breaks anything else on the way (a bug, a value PostgreSQL refuses) is recorded
    as a failed job with the reason, like an undecodable one: it never takes its batch down.
    """
    try:
        _submit_message(database, message_id, body, report, policy)
    except ledger.JobMessageError as error:
        _reject(database, message_id, body, report, str(error))
    except TRANSIENT_DATABASE_ERRORS:
        raise
    except Exception as error:  # one hostile message must not cost its neighbours their jobs
        logger.exception("SQS message %s could not be recorded as a job", message_id)
        _reject(
            database,
            message_id,
            body,
            report,
            f"message could not be recorded as a job ({type(error).__name__}: {str(error)[:300]})",
        )


def _submit_message(
    database: Database, message_id: str, body: str, report: DrainReport, policy: SourcePolicy | None
) -> None:
    requests = message_requests(message_id, body)
    if not requests:
        report.ignored += 1
        logger.info("SQS message %s has nothing to process (test or non-create event)", message_id)
        return
    with database.connection() as connection, connection.transaction():
        jobs = [
            ledger.submit_job(database, request, connection=connection, policy=policy) for request in requests
        ]
    report.jobs.extend(jobs)


def _queue_error(action: str, queue_url: str, error: Exception) -> SqsSourceError:
    return SqsSourceError(
        f"SQS {action} on {queue_url} failed: {aws.describe_error(error)}. Check AWS_SQS_QUEUE_URL, "
        "AWS_REGION and the worker's sqs:ReceiveMessage/DeleteMessage permissions.",
        permanent=aws.is_permanent(error),
    )


def drain_queue(
    client: Any,
    queue_url: str,
    database: Database,
    *,
    max_messages: int = 1,
    wait_seconds: int = 20,
    budget_seconds: float = TICK_BUDGET_SECONDS,
    max_receives: int = MAX_RECEIVES_PER_TICK,
    before_delete: Callable[[list[dict[str, Any]]], None] | None = None,
    policy: SourcePolicy | None = None,
) -> DrainReport:
    """Receive messages and move them into the ledger until the queue is empty or the budget is spent.

    Args:
        client: A boto3 SQS client (:func:`videoqa_pipeline.aws.client`).
        queue_url: AWS_SQS_QUEUE_URL.
        database: The ledger's database.
        max_messages: Messages per receive, 1-10 (SQS_MAX_MESSAGES).
        wait_seconds: Long-poll wait per receive (SQS_WAIT_TIME), cut to the remaining budget.
        budget_seconds: Stop receiving once this much time has passed.
        max_receives: Receives per pass at most.
        before_delete: Called with the received messages after they are committed to the ledger
            and before they are deleted (a test hook for crashes in between).
        policy: What a message's source may point at; a job it refuses is recorded as failed
            with the reason (SQS producers are remote: local paths only under the allowed roots).

    Returns:
        A :class:`DrainReport`.

    Raises:
        SqsSourceError: the queue cannot be read.
        DatabaseUnavailableError, psycopg.OperationalError: the ledger cannot be written; the
            messages of the failing batch stay on the queue (re-delivered, or dead-lettered by the
            queue's redrive policy).
    """
    report = DrainReport()
    deadline = time.monotonic() + budget_seconds
    for _ in range(max_receives):
        remaining = deadline - time.monotonic()
        if remaining <= 1:
            break
        try:
            response = client.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=max(1, min(10, max_messages)),
                WaitTimeSeconds=max(0, min(wait_seconds, int(remaining) - 1)),
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except (ClientError, BotoCoreError) as error:
            raise _queue_error("receive", queue_url, error) from error
        messages: list[dict[str, Any]] = response.get("Messages", [])
        if not messages:
            break
        report.received += len(messages)
        for message in messages:
            _record(database, str(message["MessageId"]), str(message.get("Body", "")), report, policy)
        if before_delete is not None:
            before_delete(messages)
        entries = [
            {"Id": str(position), "ReceiptHandle": message["ReceiptHandle"]}
            for position, message in enumerate(messages)
        ]
        try:
            result = client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as error:
            # Committed already: a re-delivery is absorbed by the ledger. Do not lose the tick's work.
            logger.warning("%s", _queue_error("delete", queue_url, error))
            report.delete_failures += len(entries)
            continue
        failed = result.get("Failed", [])
        for failure in failed:
            logger.warning(
                "SQS delete of message entry %s failed: %s", failure.get("Id"), failure.get("Message")
            )
        report.delete_failures += len(failed)
        report.deleted += len(result.get("Successful", []))
    return report


@functools.lru_cache(maxsize=4)
def _sqs_client(region: str, endpoint_url: str | None) -> Any:
    # One client per process and configuration: building one costs ~50 ms, a tick runs often.
    return aws.client("sqs", aws.AwsConfig(region=region, endpoint_url=endpoint_url))


def build_sqs_sensor(settings: Settings) -> dg.SensorDefinition:
    """The SQS sensor for ``settings`` (AWS_SQS_QUEUE_URL, SQS_MAX_MESSAGES, SQS_WAIT_TIME)."""
    queue_url = settings.aws_sqs_queue_url or ""
    max_messages = settings.sqs_max_messages
    wait_seconds = settings.sqs_wait_time
    region, endpoint_url = settings.aws_region, settings.aws_endpoint_url
    policy = settings.source_policy
    enabled = "sqs" in settings.job_sources

    @dg.sensor(
        name=SQS_SENSOR_NAME,
        minimum_interval_seconds=sensor_interval_seconds(settings.worker_poll_ms),
        default_status=default_status(enabled),
        description="Messages on AWS_SQS_QUEUE_URL (job messages, S3 upload events) become jobs in the ledger. "
        "Enabled when JOB_SOURCE_TYPE lists sqs.",
    )
    def sqs_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SkipReason:
        gate = skip_reason(settings, enabled=enabled, how_to_enable="set JOB_SOURCE_TYPE to include sqs")
        if gate is not None:
            return gate
        try:
            report = drain_queue(
                _sqs_client(region, endpoint_url),
                queue_url,
                database.get(),
                max_messages=max_messages,
                wait_seconds=wait_seconds,
                policy=policy,
            )
        except TRANSIENT_DATABASE_ERRORS as error:
            context.log.warning(f"job ledger not reachable, messages stay on the queue: {error}")
            return dg.SkipReason(f"job ledger not reachable: {error}")
        except SqsSourceError as error:
            context.log.error(str(error))
            return dg.SkipReason(str(error))
        for job in report.jobs:
            note = "" if job.created else " (re-delivery, already recorded)"
            context.log.info(f"sqs: job {job.job_id} for video {job.video_id}{note}")
        summary = (
            f"{report.received} message(s): {report.new_jobs} new job(s), {report.rejected} rejected, "
            f"{report.ignored} ignored, {report.deleted} deleted"
        )
        if report.received:
            context.log.info(summary)
        # Runs are the job sensor's business: this sensor only fills the ledger.
        return dg.SkipReason(summary if report.received else f"no messages on {queue_url}")

    return sqs_sensor

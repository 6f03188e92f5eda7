"""Create the S3 bucket and the SQS queue (with its dead-letter queue) the stack expects.

Run once by docker-compose.yml's ``aws-init`` service against the local S3 + SQS service
(moto), before the pipeline starts. Idempotent: an existing bucket or queue is left as it is.
Against real AWS, create them with your infrastructure tooling instead.

Environment: ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_S3_BUCKET``, ``AWS_SQS_QUEUE_URL``
(the queue name is its last path segment) and the AWS credentials.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger("videoqa.init_aws")

#: Receives after which SQS moves a message to the dead-letter queue.
MAX_RECEIVES = 5


def wait_for_endpoint(client: object, attempts: int = 30) -> None:
    """Retry ``list_buckets`` until the service answers (it may still be starting)."""
    for attempt in range(1, attempts + 1):
        try:
            client.list_buckets()  # type: ignore[attr-defined]
            return
        except (BotoCoreError, ClientError) as error:
            logger.info("S3 endpoint not ready (attempt %d/%d): %s", attempt, attempts, error)
            time.sleep(1)
    raise SystemExit(f"the S3 endpoint {os.environ.get('AWS_ENDPOINT_URL')} did not answer; is it running?")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    region = os.environ.get("AWS_REGION", "us-east-1")
    bucket = os.environ.get("AWS_S3_BUCKET", "").strip()
    queue_url = os.environ.get("AWS_SQS_QUEUE_URL", "").strip()
    s3 = boto3.client("s3", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    wait_for_endpoint(s3)
    if bucket:
        try:
            if region == "us-east-1":
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
            logger.info("created bucket %s", bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise
            logger.info("bucket %s exists", bucket)
    if queue_url:
        name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)})
        created = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
        logger.info("queue %s ready (dead letters: %s-dlq)", created, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())

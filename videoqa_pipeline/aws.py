"""One place that builds boto3 clients from settings: region, endpoint and retry behaviour.

S3 blobs, Parquet tables, ``s3://`` sources and the SQS sensor all talk to AWS (or to a
compatible server: MinIO, LocalStack, moto). They must agree on the region, on
``AWS_ENDPOINT_URL`` and on how hard to retry, so none of them calls ``boto3.client`` itself.
Credentials are never passed around here: boto3's own chain (environment, profile, instance
role) finds them. No Dagster import here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
#: Attempts per API call in botocore's "standard" retry mode (throttling, 5xx, connection resets).
DEFAULT_MAX_ATTEMPTS = 5

#: Error codes that no retry will fix: the caller must change permissions, names or input.
PERMANENT_ERROR_CODES = frozenset(
    {
        "403",
        "404",
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidBucketName",
        "NoSuchBucket",
        "NoSuchKey",
        "NotFound",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "InvalidParameterValue",
        "AuthorizationError",
        "UnrecognizedClientException",
        "ExpiredToken",
        "InvalidClientTokenId",
    }
)


@dataclass(frozen=True)
class AwsConfig:
    """How to reach AWS: the region and, for S3/SQS-compatible servers, an endpoint URL.

    Attributes:
        region: AWS region name, e.g. ``us-east-1`` (AWS_REGION).
        endpoint_url: Base URL of a compatible server (AWS_ENDPOINT_URL); None for AWS itself.
        max_attempts: Attempts per API call, retries included.
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for a response; must exceed the SQS long-poll wait.
    """

    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AwsConfig:
        """Read AWS_REGION (or AWS_DEFAULT_REGION) and AWS_ENDPOINT_URL from ``env`` (default: os.environ)."""
        env = os.environ if env is None else env
        region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION).strip()
        endpoint = (env.get("AWS_ENDPOINT_URL") or "").strip() or None
        return cls(region=region or DEFAULT_REGION, endpoint_url=endpoint)

    def botocore_config(self) -> Config:
        """Retries in botocore's standard mode, bounded timeouts, path-style S3 addressing.

        Path-style addressing is what MinIO and moto expect; AWS accepts it too.
        """
        return Config(
            region_name=self.region,
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            s3={"addressing_style": "path"} if self.endpoint_url else {},
        )


def client(service: str, config: AwsConfig | None = None) -> Any:
    """A boto3 client for ``service`` (``"s3"``, ``"sqs"``) configured from ``config``.

    Args:
        service: The AWS service name.
        config: Region, endpoint and retries; default :meth:`AwsConfig.from_env`.

    Returns:
        A botocore client (typed ``Any``: boto3 ships no type stubs).
    """
    config = config or AwsConfig.from_env()
    session = boto3.session.Session()
    return session.client(
        service,
        region_name=config.region,
        endpoint_url=config.endpoint_url,
        config=config.botocore_config(),
    )


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore error (``"NoSuchBucket"``, ``"404"``...), or ``""``."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def is_permanent(error: BaseException) -> bool:
    """True when retrying ``error`` cannot help (missing bucket or key, access denied, bad name).

    Throttling, 5xx and connection errors are transient: botocore has already retried them, and
    the Dagster step's retry policy may try again later.
    """
    if isinstance(error, ClientError):
        code = error_code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in PERMANENT_ERROR_CODES:
            return True
        return 400 <= status < 500 and status not in (408, 429) and "Throttl" not in code
    return not isinstance(error, BotoCoreError) and not isinstance(error, OSError)


def describe_error(error: BaseException) -> str:
    """A one-line reason for ``error`` with a hint for the common permanent cases."""
    code = error_code(error)
    if isinstance(error, ClientError):
        message = str(error.response.get("Error", {}).get("Message", "")) or str(error)
        hints = {
            "NoSuchBucket": "create the bucket or fix AWS_S3_BUCKET",
            "AccessDenied": "grant the worker's credentials access to it (s3:GetObject/PutObject/ListBucket)",
            "403": "grant the worker's credentials access to it (s3:GetObject/PutObject/ListBucket)",
            "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID / the worker's role",
            "SignatureDoesNotMatch": "check AWS_SECRET_ACCESS_KEY",
        }
        hint = hints.get(code)
        return f"{code}: {message}" + (f" ({hint})" if hint else "")
    return f"{type(error).__name__}: {error}"

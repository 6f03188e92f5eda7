"""A :class:`~videoqa_pipeline.storage.blobs.BlobStore` on Amazon S3 (or MinIO, LocalStack, moto).

Blob ``<video_id>/<stage>/<name>`` is the object ``<S3_PREFIX><video_id>/<stage>/<name>`` in
``AWS_S3_BUCKET``. Files move with boto3's managed transfer: multipart above a threshold, a few
parts in flight at a time, so uploading or downloading a multi-GB video keeps memory to
``max_concurrency x part size`` plus small I/O buffers, whatever the file's size. A single PUT and
a completed multipart upload are both atomic in S3, so readers never see a partial blob.

Failures become :class:`S3StorageError`, whose message names the bucket, the key and the
operation and whose ``permanent`` flag tells the pipeline whether retrying can help (a missing
bucket or denied access cannot; throttling and 5xx can). No Dagster import here.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from videoqa_pipeline import aws
from videoqa_pipeline.storage.blobs import STREAM_CHUNK_BYTES, validate_key
from videoqa_pipeline.storage.errors import BlobNotFoundError, InvalidBlobKeyError, StorageError

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
#: Part size of multipart transfers (boto3 grows it for objects beyond S3's 10 000 parts).
PART_BYTES = 8 * MIB
#: Parts in flight at once: memory of an upload is about PART_BYTES x TRANSFER_CONCURRENCY.
TRANSFER_CONCURRENCY = 4
#: Downloaded chunks waiting for the disk (256 KiB each): bounds memory when the disk is slow.
DOWNLOAD_QUEUE_CHUNKS = 64
_DELETE_BATCH = 1000  # DeleteObjects accepts at most 1000 keys per call
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}


class S3StorageError(StorageError):
    """An S3 operation failed. ``permanent`` is False when a later retry may succeed."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def normalize_prefix(prefix: str) -> str:
    """``"video-processing"`` → ``"video-processing/"``; ``""`` and ``"/"`` → ``""`` (bucket root)."""
    cleaned = prefix.strip().strip("/")
    return f"{cleaned}/" if cleaned else ""


def transfer_config() -> TransferConfig:
    """Multipart settings with bounded memory (see the module docstring)."""
    return TransferConfig(
        multipart_threshold=PART_BYTES,
        multipart_chunksize=PART_BYTES,
        max_concurrency=TRANSFER_CONCURRENCY,
        max_io_queue=DOWNLOAD_QUEUE_CHUNKS,
        use_threads=True,
    )


class S3BlobStore:
    """Blobs as S3 objects under ``prefix`` in ``bucket``.

    The client is created lazily and shared by the store's methods (botocore clients are
    thread-safe); pass ``client`` to reuse one.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "video-processing/",
        config: aws.AwsConfig | None = None,
        *,
        client: Any = None,
    ) -> None:
        """Use ``bucket`` (which must exist) with keys under ``prefix``.

        Args:
            bucket: AWS_S3_BUCKET.
            prefix: S3_PREFIX; a trailing ``/`` is added when missing.
            config: Region, endpoint and retries; default :meth:`AwsConfig.from_env`.
            client: An existing boto3 S3 client to use instead of building one.

        Raises:
            S3StorageError: ``bucket`` is empty.
        """
        if not bucket:
            raise S3StorageError(
                "no S3 bucket configured for the blob store: set AWS_S3_BUCKET", permanent=True
            )
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self.config = config or aws.AwsConfig.from_env()
        self._client = client

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    @property
    def client(self) -> Any:
        """The boto3 S3 client (built on first use)."""
        if self._client is None:
            self._client = aws.client("s3", self.config)
        return self._client

    def object_key(self, key: str) -> str:
        """The S3 object key of blob ``key`` (prefix included).

        Raises:
            InvalidBlobKeyError: the key is invalid.
        """
        return self.prefix + validate_key(key)

    def _error(self, operation: str, key: str, error: Exception) -> S3StorageError:
        where = f"s3://{self.bucket}/{self.prefix}{key}"
        endpoint = f" at {self.config.endpoint_url}" if self.config.endpoint_url else ""
        return S3StorageError(
            f"S3 {operation} of {where}{endpoint} (region {self.config.region}) failed: "
            f"{aws.describe_error(error)}",
            permanent=aws.is_permanent(error),
        )

    def _not_found(self, key: str) -> BlobNotFoundError:
        return BlobNotFoundError(
            f"no blob {key!r} in s3://{self.bucket}/{self.prefix}: it was never stored or has been "
            "deleted; re-materialize the stage that writes it"
        )

    def put_file(self, key: str, path: Path) -> str:
        """Upload the file at ``path`` as blob ``key`` (multipart above 8 MiB, bounded memory).

        Args:
            key: Destination key.
            path: Source file; left untouched.

        Returns:
            The ``s3://`` URI of the stored blob.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            InvalidBlobKeyError: the key is invalid.
            S3StorageError: S3 refused or failed the upload.
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"cannot store {source} as blob {key!r}: no such file")
        object_key = self.object_key(key)
        try:
            self.client.upload_file(str(source), self.bucket, object_key, Config=transfer_config())
        except (ClientError, BotoCoreError) as error:
            raise self._error("upload", key, error) from error
        except Exception as error:  # s3transfer wraps ClientError in S3UploadFailedError
            cause = error.__cause__ or error.__context__
            if isinstance(cause, (ClientError, BotoCoreError)):
                raise self._error("upload", key, cause) from error
            raise self._error("upload", key, error) from error
        logger.debug("Uploaded %s to %s", source, self.uri(key))
        return self.uri(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` as blob ``key`` with one PUT; return its ``s3://`` URI.

        Raises:
            S3StorageError: S3 refused or failed the write.
        """
        object_key = self.object_key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=object_key, Body=data)
        except (ClientError, BotoCoreError) as error:
            raise self._error("put", key, error) from error
        return self.uri(key)

    def get_bytes(self, key: str) -> bytes:
        """Return the whole blob (for small blobs: thumbnails, Parquet tables, JSON).

        Raises:
            BlobNotFoundError: nothing is stored under ``key``.
            S3StorageError: S3 refused or failed the read.
        """
        return b"".join(self._read(key))

    def iter_bytes(self, key: str, first: int = 0, last: int | None = None) -> Iterator[bytes]:
        """Stream a byte range with one ranged GET, in chunks of ``STREAM_CHUNK_BYTES``.

        Raises:
            BlobNotFoundError: nothing is stored under ``key``.
            S3StorageError: S3 refused or failed the read.
        """
        return self._read(key, f"bytes={first}-" if last is None else f"bytes={first}-{last}")

    def _read(self, key: str, byte_range: str | None = None) -> Iterator[bytes]:
        extra = {"Range": byte_range} if byte_range else {}
        with self._reported("get", key):
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key), **extra)
            body = response["Body"]
            try:
                yield from body.iter_chunks(STREAM_CHUNK_BYTES)
            finally:
                body.close()

    @contextmanager
    def _reported(self, operation: str, key: str) -> Iterator[None]:
        """Turn boto errors into BlobNotFoundError or a readable S3StorageError."""
        try:
            yield
        except ClientError as error:
            if aws.error_code(error) in _NOT_FOUND_CODES:
                raise self._not_found(key) from error
            raise self._error(operation, key, error) from error
        except BotoCoreError as error:
            raise self._error(operation, key, error) from error

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """Download the blob to a temporary file (streamed, bounded memory), yield it, remove it.

        Raises:
            BlobNotFoundError: nothing is stored under ``key``.
            S3StorageError: S3 refused or failed the download.
        """
        object_key = self.object_key(key)
        suffix = Path(key).suffix[:10]
        with tempfile.TemporaryDirectory(prefix="videoqa-s3-") as directory:
            target = Path(directory) / f"blob{suffix}"
            with self._reported("download", key):
                self.client.download_file(self.bucket, object_key, str(target), Config=transfer_config())
            yield target

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            response: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as error:
            if aws.error_code(error) in _NOT_FOUND_CODES:
                return None
            raise self._error("head", key, error) from error
        except BotoCoreError as error:
            raise self._error("head", key, error) from error
        return response

    def exists(self, key: str) -> bool:
        """True when a blob is stored under ``key``.

        Raises:
            S3StorageError: S3 refused the request (e.g. the bucket is missing or access is denied).
        """
        return self._head(key) is not None

    def size(self, key: str) -> int:
        """Size of the blob in bytes.

        Raises:
            BlobNotFoundError: nothing is stored under ``key``.
        """
        head = self._head(key)
        if head is None:
            raise self._not_found(key)
        return int(head["ContentLength"])

    def uri(self, key: str) -> str:
        """``s3://bucket/prefix/key``."""
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` (a plain string prefix), sorted.

        Raises:
            InvalidBlobKeyError: the prefix is absolute.
            S3StorageError: the listing failed.
        """
        if prefix.startswith("/") or "\\" in prefix or "\x00" in prefix:
            raise InvalidBlobKeyError(f"blob key prefix {prefix!r} must be relative and '/'-separated")
        keys: list[str] = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    keys.append(str(item["Key"])[len(self.prefix) :])
        except (ClientError, BotoCoreError) as error:
            raise self._error("list", prefix + "*", error) from error
        return iter(sorted(keys))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix`` (batches of 1000); return the count.

        Raises:
            InvalidBlobKeyError: an empty prefix (it would delete every blob).
            S3StorageError: a listing or deletion failed.
        """
        if not prefix:
            raise InvalidBlobKeyError("refusing to delete with an empty prefix (it would delete every blob)")
        keys = list(self.list_keys(prefix))
        deleted = 0
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self.prefix + key} for key in batch], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as error:
                raise self._error("delete", prefix + "*", error) from error
            errors = response.get("Errors", [])
            if errors:
                first = errors[0]
                raise S3StorageError(
                    f"S3 delete under s3://{self.bucket}/{self.prefix}{prefix} failed for {len(errors)} "
                    f"object(s), e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')}",
                    permanent=str(first.get("Code")) in aws.PERMANENT_ERROR_CODES,
                )
            deleted += len(batch)
        logger.info(
            "Deleted %d blob(s) with prefix %r from s3://%s/%s", deleted, prefix, self.bucket, self.prefix
        )
        return deleted

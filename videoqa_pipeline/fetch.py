"""Bring a video source (local path, file://, http(s)://, s3://) to a local file, streaming.

Pure: no Dagster. Remote sources are copied to a temporary file in bounded chunks so a
multi-GB original never sits in memory; local files are used in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024


class SourceUnavailableError(Exception):
    """The source could not be read. ``permanent`` is False for errors worth retrying (timeouts, 5xx)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def local_path_of(source_uri: str) -> Path | None:
    """The local file a URI names (plain path or file://), or None for remote URIs."""
    parts = urlsplit(source_uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if len(parts.scheme) <= 1:  # plain paths, including Windows drive letters
        return Path(source_uri).expanduser()
    return None


@contextlib.contextmanager
def fetched_source(
    source_uri: str, *, timeout_seconds: float = 60.0, aws_endpoint_url: str | None = None
) -> Iterator[Path]:
    """Yield a local path holding the source's bytes; temporary copies are removed afterwards.

    Raises:
        SourceUnavailableError: the URI scheme is unsupported or the remote read failed.
    """
    local = local_path_of(source_uri)
    if local is not None:
        yield local  # existence and format are the media layer's checks, with its precise messages
        return
    scheme = urlsplit(source_uri).scheme
    suffix = Path(unquote(urlsplit(source_uri).path)).suffix[:10]
    with tempfile.TemporaryDirectory(prefix="videoqa-fetch-") as tmp:
        target = Path(tmp) / f"source{suffix}"
        if scheme in ("http", "https"):
            _download_http(source_uri, target, timeout_seconds)
        elif scheme == "s3":
            _download_s3(source_uri, target, aws_endpoint_url)
        else:
            raise SourceUnavailableError(
                f"cannot read {source_uri!r}: unsupported scheme {scheme!r} (use a path, file://, http(s):// or s3://)",
                permanent=True,
            )
        yield target


def _download_http(url: str, target: Path, timeout_seconds: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "videoqa-pipeline"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out, CHUNK_BYTES)
    except urllib.error.HTTPError as error:
        permanent = 400 <= error.code < 500 and error.code not in (408, 429)
        raise SourceUnavailableError(
            f"downloading {url} failed: HTTP {error.code} {error.reason}", permanent=permanent
        ) from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SourceUnavailableError(f"downloading {url} failed: {reason}", permanent=False) from error
    logger.info("downloaded %s (%d bytes)", url, target.stat().st_size)


def _download_s3(uri: str, target: Path, endpoint_url: str | None) -> None:
    # Same client configuration as the S3 blob store (region, endpoint, retries) and the same
    # bounded-memory multipart transfer, so a multi-GB original streams to disk.
    from botocore.exceptions import BotoCoreError, ClientError

    from videoqa_pipeline import aws
    from videoqa_pipeline.storage.s3_blobs import transfer_config

    parts = urlsplit(uri)
    bucket, key = parts.netloc, unquote(parts.path.lstrip("/"))
    if not bucket or not key:
        raise SourceUnavailableError(f"cannot read {uri!r}: expected s3://<bucket>/<key>", permanent=True)
    config = aws.AwsConfig.from_env()
    if endpoint_url:
        config = dataclasses.replace(config, endpoint_url=endpoint_url)
    client = aws.client("s3", config)
    try:
        client.download_file(bucket, key, str(target), Config=transfer_config())
    except (ClientError, BotoCoreError) as error:
        raise SourceUnavailableError(
            f"reading {uri} failed: {aws.describe_error(error)}", permanent=aws.is_permanent(error)
        ) from error
    logger.info("downloaded %s (%d bytes)", uri, target.stat().st_size)


def file_sha256(path: Path) -> str:
    """Content hash of a file, read in chunks: identifies re-submitted originals."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()

"""Blob stores: where media (originals, normalized video, audio, keyframes) live.

Tables hold *blob keys*, never bytes. A key is a relative, ``/``-separated path such as
``<video_id>/<stage>/<name>`` (:func:`blob_key`); a :class:`BlobStore` maps keys to storage. The
protocol is small and streaming-friendly so an S3 store (multipart upload, temporary download for
:meth:`BlobStore.local_path`) or a chunked Postgres store can implement it later; stage code only
ever sees the protocol.

:class:`LocalBlobStore` keeps each blob as a file under a root directory. Writes go to a hidden
temporary file in the destination directory and are renamed into place with ``os.replace``, so a
reader never sees a partial blob and a crashed write leaves no blob behind. No Dagster import here.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from videoqa_pipeline.storage.errors import BlobNotFoundError, InvalidBlobKeyError, StorageError

logger = logging.getLogger(__name__)

#: Copy buffer: large enough for throughput, small enough that memory stays flat for any size.
COPY_BUFFER_BYTES = 1024 * 1024
#: Prefix of in-flight temporary files; keys may not use it, listings skip it.
TEMPORARY_PREFIX = ".videoqa-partial-"

#: Chunk size of :meth:`BlobStore.iter_bytes`: large enough for throughput, small enough to stream.
STREAM_CHUNK_BYTES = 1024 * 1024


def _copy_stream(reader: BinaryIO, writer: BinaryIO) -> None:
    """Copy ``reader`` to ``writer`` with bounded memory.

    ``os.sendfile`` copies inside the kernel (about 5x faster than a user-space loop for large
    videos, and no Python buffer at all); where the platform refuses it for regular files, fall
    back to ``shutil.copyfileobj`` with a 1 MiB buffer.
    """
    writer.flush()
    offset = 0
    try:
        while True:
            sent = os.sendfile(writer.fileno(), reader.fileno(), offset, 1 << 30)
            if sent == 0:
                return
            offset += sent
    except (AttributeError, OSError) as error:
        if offset or (isinstance(error, OSError) and error.errno not in _SENDFILE_UNSUPPORTED):
            raise
    reader.seek(0)
    shutil.copyfileobj(reader, writer, COPY_BUFFER_BYTES)


_SENDFILE_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, errno.EOPNOTSUPP, errno.EXDEV}
#: A write failed for lack of room: disk full, quota exhausted, or the file size limit reached.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class BlobStoreFullError(StorageError, OSError):
    """A blob could not be written because its disk (or quota) is full.

    Not ``permanent``: the input is fine, and the same write succeeds once space is freed, so the
    step's retry policy and the job's next attempt may retry it. Still an ``OSError`` (with the
    original ``errno``) for callers that handle file-system errors generically.
    """

    permanent = False

    def __init__(self, message: str, error_number: int) -> None:
        super().__init__(message)
        self.errno = error_number


def _validate_segment(segment: str, what: str) -> str:
    if not segment or segment in (".", "..") or "/" in segment or "\\" in segment or "\x00" in segment:
        raise InvalidBlobKeyError(
            f"{what} {segment!r} is not a valid blob key segment: it must be non-empty and contain no "
            "'/', '\\', NUL, and not be '.' or '..'"
        )
    if segment.startswith(TEMPORARY_PREFIX):
        raise InvalidBlobKeyError(f"{what} {segment!r} uses the reserved prefix {TEMPORARY_PREFIX!r}")
    return segment


def validate_key(key: str) -> str:
    """Check that ``key`` is a relative path that stays inside a store; return it unchanged.

    Args:
        key: A blob key like ``"vid1/keyframes/scene_0003.jpg"``.

    Returns:
        ``key``.

    Raises:
        InvalidBlobKeyError: empty, absolute, with empty, ``.`` or ``..`` segments, backslashes or NUL.
    """
    if not isinstance(key, str) or not key or key.startswith("/"):
        raise InvalidBlobKeyError(
            f"blob key {key!r} must be a non-empty relative path like '<video_id>/<stage>/<name>'"
        )
    for segment in key.split("/"):
        _validate_segment(segment, f"segment of blob key {key!r}:")
    return key


def blob_key(video_id: str, stage: str, name: str) -> str:
    """Build the key of a blob produced by ``stage`` for ``video_id``.

    Args:
        video_id: The video (partition key).
        stage: The producing stage, e.g. ``"source"``, ``"normalized"``, ``"keyframes"``.
        name: File name, e.g. ``"scene_0003.jpg"``.

    Returns:
        ``"<video_id>/<stage>/<name>"``.

    Raises:
        InvalidBlobKeyError: a part is empty or contains ``/``, ``\\``, NUL, or is ``.``/``..``.
    """
    _validate_segment(video_id, "video ID")
    _validate_segment(stage, "stage")
    _validate_segment(name, "blob name")
    return f"{video_id}/{stage}/{name}"


@runtime_checkable
class BlobStore(Protocol):
    """Stores media under keys. Implementations: :class:`LocalBlobStore` (S3 and Postgres later)."""

    def put_file(self, key: str, path: Path) -> str:
        """Store the file at ``path`` under ``key`` (streamed, atomic); return the blob's URI."""
        ...

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` (atomic); return the blob's URI."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Return the whole blob (for small blobs: thumbnails, JSON); raises BlobNotFoundError."""
        ...

    def iter_bytes(self, key: str, first: int = 0, last: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``first`` to ``last`` (inclusive; None: to the end) in bounded chunks.

        For serving ranges of large blobs (a video player's seeks) without holding them in memory.
        Raises BlobNotFoundError (when iteration starts).
        """
        ...

    def local_path(self, key: str) -> AbstractContextManager[Path]:
        """Context manager giving a readable local file with the blob's content.

        Local stores give the file itself; remote stores a temporary download, removed on exit.
        Do not modify the file.
        """
        ...

    def exists(self, key: str) -> bool:
        """True when a blob is stored under ``key``."""
        ...

    def size(self, key: str) -> int:
        """Size of the blob in bytes; raises BlobNotFoundError."""
        ...

    def uri(self, key: str) -> str:
        """A URI naming the blob (``file://``, ``s3://``...), for metadata and logs."""
        ...

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` (a plain string prefix, as in S3), sorted."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix``; return how many were deleted."""
        ...


class LocalBlobStore:
    """A :class:`BlobStore` keeping each blob as a file under ``root``.

    Keys map to ``root / key``; keys that are absolute or contain ``..`` are rejected, so no key can
    reach outside ``root``.
    """

    def __init__(self, root: Path) -> None:
        """Use (and create on first write) the directory ``root``.

        Args:
            root: Directory holding the blobs, e.g. ``$VIDEOQA_HOME/blobs``.
        """
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path_for(self, key: str) -> Path:
        """The file a key maps to (which may not exist).

        Raises:
            InvalidBlobKeyError: the key is invalid.
        """
        path = self.root / validate_key(key)
        # Belt and braces against symlinks placed inside the root pointing elsewhere.
        if not path.resolve().is_relative_to(self.root):
            raise InvalidBlobKeyError(f"blob key {key!r} resolves outside the store root {self.root}")
        return path

    @contextmanager
    def _atomic_writer(self, key: str) -> Iterator[BinaryIO]:
        destination = self.path_for(key)
        destination.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary_name = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=destination.parent)
        temporary = Path(temporary_name)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o644)  # mkstemp creates 0600; blobs are meant to be shared
            os.replace(temporary, destination)
        except BaseException as error:
            temporary.unlink(missing_ok=True)
            if isinstance(error, OSError) and error.errno in _NO_ROOM:
                raise self._full_error(key, destination, error) from error
            raise

    def _full_error(self, key: str, destination: Path, error: OSError) -> BlobStoreFullError:
        """The error for a write that ran out of room, with where, how much is free and what to do."""
        try:
            usage = shutil.disk_usage(destination.parent)
            room = f"{usage.free / 1e6:.1f} MB free of {usage.total / 1e6:.1f} MB"
        except OSError:
            room = "free space unknown"
        logger.error("Blob store %s is full: could not write %s (%s)", self.root, key, room)
        return BlobStoreFullError(
            f"cannot store blob {key!r} at {destination}: the disk holding the blob store {self.root} is "
            f"full ({error.strerror}; {room}). Nothing was written at that path. Free space there or set "
            "VIDEOQA_BLOB_DIR to a larger disk; the step can then be retried (`videoqa requeue JOB`).",
            error.errno or errno.ENOSPC,
        )

    def put_file(self, key: str, path: Path) -> str:
        """Copy the file at ``path`` into the store under ``key``, streaming (kernel copy or 1 MiB chunks).

        Args:
            key: Destination key.
            path: Source file; left untouched.

        Returns:
            The ``file://`` URI of the stored blob.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            InvalidBlobKeyError: the key is invalid.
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"cannot store {source} as blob {key!r}: no such file")
        with open(source, "rb") as reader, self._atomic_writer(key) as writer:
            _copy_stream(reader, writer)
        logger.debug("Stored %s as blob %s", source, key)
        return self.uri(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` atomically; return its ``file://`` URI."""
        with self._atomic_writer(key) as writer:
            writer.write(data)
        return self.uri(key)

    def _existing(self, key: str) -> Path:
        path = self.path_for(key)
        if not path.is_file():
            raise BlobNotFoundError(
                f"no blob {key!r} in {self.root}: it was never stored or has been deleted; "
                "re-materialize the stage that writes it"
            )
        return path

    def get_bytes(self, key: str) -> bytes:
        """Return the blob's content.

        Raises:
            BlobNotFoundError: nothing is stored under ``key``.
        """
        return self._existing(key).read_bytes()

    def iter_bytes(self, key: str, first: int = 0, last: int | None = None) -> Iterator[bytes]:
        """Stream a byte range of the blob's file in chunks of :data:`STREAM_CHUNK_BYTES`.

        Raises:
            BlobNotFoundError: nothing is stored under ``key``.
        """
        path = self._existing(key)
        with path.open("rb") as file:
            file.seek(first)
            remaining = None if last is None else max(0, last - first + 1)
            while remaining is None or remaining > 0:
                chunk = file.read(
                    STREAM_CHUNK_BYTES if remaining is None else min(STREAM_CHUNK_BYTES, remaining)
                )
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    @contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """Yield the blob's own file (no copy). Do not modify it.

        Raises:
            BlobNotFoundError: nothing is stored under ``key``.
        """
        yield self._existing(key)

    def exists(self, key: str) -> bool:
        """True when a blob is stored under ``key``."""
        return self.path_for(key).is_file()

    def size(self, key: str) -> int:
        """Size in bytes.

        Raises:
            BlobNotFoundError: nothing is stored under ``key``.
        """
        return self._existing(key).stat().st_size

    def uri(self, key: str) -> str:
        """``file://`` URI of the blob's path."""
        return self.path_for(key).as_uri()

    def _scan_start(self, prefix: str) -> Path:
        """The deepest directory that can hold keys starting with ``prefix``."""
        if prefix.startswith("/") or "\\" in prefix or "\x00" in prefix:
            raise InvalidBlobKeyError(f"blob key prefix {prefix!r} must be relative and '/'-separated")
        directory_part = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        if directory_part:
            for segment in directory_part.split("/"):
                _validate_segment(segment, f"segment of blob key prefix {prefix!r}:")
        return self.root / directory_part if directory_part else self.root

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` (string prefix, as in S3), sorted; in-flight writes skipped."""
        start = self._scan_start(prefix)
        if not start.is_dir():
            return iter(())
        keys: list[str] = []
        for directory, _subdirectories, files in os.walk(start):
            for name in files:
                if name.startswith(TEMPORARY_PREFIX):
                    continue
                key = (Path(directory) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix``, then directories left empty.

        ``"vid1/"`` deletes one video's blobs; an empty prefix is refused (it would wipe the store).

        Returns:
            Number of blobs deleted.

        Raises:
            InvalidBlobKeyError: an empty or invalid prefix.
        """
        if not prefix:
            raise InvalidBlobKeyError("refusing to delete with an empty prefix (it would delete every blob)")
        start = self._scan_start(prefix)
        deleted = 0
        for key in list(self.list_keys(prefix)):
            with contextlib.suppress(FileNotFoundError):
                (self.root / key).unlink()
                deleted += 1
        if start.is_dir():
            for directory, _subdirectories, _files in sorted(os.walk(start), key=lambda item: -len(item[0])):
                path = Path(directory)
                # Only directories inside the prefix: others may be about to receive a write.
                if path != self.root and (path.relative_to(self.root).as_posix() + "/").startswith(prefix):
                    with contextlib.suppress(OSError):  # not empty (other keys, in-flight writes)
                        path.rmdir()
        logger.info("Deleted %d blob(s) with prefix %r from %s", deleted, prefix, self.root)
        return deleted

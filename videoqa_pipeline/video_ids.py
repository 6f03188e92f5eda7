"""Video IDs: the rules for the keys that name a video everywhere (ledger, tables, blobs, partitions).

Video IDs are opaque, safe keys: commas, slashes and JSON in keys break the Dagster UI and
backfills (they are its partition keys), so IDs are restricted to a conservative alphabet.
Pure: no Dagster, so the ledger and the service can use these rules without loading it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

VIDEO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_UNSAFE = re.compile(r"[^a-z0-9]+")

#: The partition key that stands for the bundled sample video.
SAMPLE_VIDEO_ID = "sample"


class InvalidVideoIdError(ValueError):
    """A user-supplied video ID cannot be used as a partition key."""


def validate_video_id(video_id: str) -> str:
    """Return ``video_id`` when it is a safe partition key, else raise with the rule spelled out."""
    if not VIDEO_ID_PATTERN.match(video_id):
        raise InvalidVideoIdError(
            f"video ID {video_id!r} is not allowed: use 1-128 characters from letters, digits, '.', '_' "
            "and '-', starting with a letter or digit"
        )
    return video_id


def readable_video_id(name: str, distinguisher: str) -> str:
    """``<slug of the file's stem>-<first 8 characters of distinguisher>``: readable in the UI,
    and two ``video.mp4`` files stay apart through the distinguisher (a hash)."""
    path = unquote(urlsplit(name).path) if "://" in name else name
    stem = _UNSAFE.sub("-", PurePosixPath(path.replace("\\", "/")).stem.lower()).strip("-")[:48] or "video"
    return f"{stem}-{distinguisher[:8]}"


def video_id_from_uri(source_uri: str) -> str:
    """Derive a stable, readable video ID from a source path or URI (distinguished by a hash of the URI)."""
    return readable_video_id(source_uri, hashlib.sha256(source_uri.encode("utf-8")).hexdigest())

"""The inbox sensor: a video dropped into the watched folder becomes a job, once.

The embedded default's job source: ``VIDEOQA_INBOX`` (default ``$VIDEOQA_HOME/inbox``).

How a drop is taken in, so that neither a crash nor a restart loses or repeats it:

1. A regular, non-hidden file whose size and mtime have not changed for ``SETTLE_SECONDS`` is
   fingerprinted (SHA-256 of its content, streamed: bounded memory).
2. It is renamed (atomic, same folder tree) to ``accepted/<ns-time>-<fingerprint>-<name>``.
3. A job is submitted for the accepted path with ``source_kind='inbox'`` and the fingerprint as
   ``external_id``: the same content dropped twice is one job.

A crash between 2 and 3 leaves an accepted file without a job. The sensor's cursor is the newest
accepted name whose job is known to exist; every tick re-submits accepted files newer than it
(idempotent thanks to the fingerprint) before advancing it, so such a file is picked up on the
next tick. The ``accepted/`` folder keeps the originals the runs read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import dagster as dg

from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.defs.sensors.gates import default_status, skip_reason
from videoqa_pipeline.defs.sensors.job_sensor import TRANSIENT_DATABASE_ERRORS, sensor_interval_seconds
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.video_ids import readable_video_id

logger = logging.getLogger(__name__)

INBOX_SENSOR_NAME = "inbox_sensor"
ACCEPTED_DIR = "accepted"
#: A file still being written changes size or mtime; wait this long after the last change.
SETTLE_SECONDS = 2.0
#: Names that are (still) being written by common copy tools.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart")
FILES_PER_TICK = 20
_CHUNK = 1 << 20


def fingerprint(path: Path) -> str:
    """SHA-256 of the file's content (hex, first 32 characters), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def settled_drops(inbox: Path, limit: int, settle_seconds: float = SETTLE_SECONDS) -> list[Path]:
    """Files in ``inbox`` ready to take in: regular, non-hidden, not partial, unchanged lately.

    Oldest first, at most ``limit``.
    """
    now = time.time()
    ready: list[tuple[float, Path]] = []
    with os.scandir(inbox) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES):
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
            if now - stat.st_mtime < settle_seconds:
                continue
            ready.append((stat.st_mtime, Path(entry.path)))
    ready.sort()
    return [path for _, path in ready[:limit]]


def _parse_accepted(name: str) -> tuple[str, str] | None:
    """``(fingerprint, original name)`` of a name this sensor wrote, else None."""
    parts = name.split("-", 2)
    return (parts[1], parts[2]) if len(parts) == 3 and len(parts[1]) == 32 else None


def take_in(
    inbox: Path, database: Database, cursor: str | None, limit: int = FILES_PER_TICK
) -> tuple[list[ledger.SubmittedJob], str | None]:
    """One pass over the inbox (see the module docstring).

    Args:
        inbox: The watched folder (created when missing).
        database: The ledger's database.
        cursor: The newest accepted name known to have its job (None at first).
        limit: Most new drops taken in per pass.

    Returns:
        The jobs submitted (``created`` False for content already taken in) and the new cursor.
    """
    accepted = inbox / ACCEPTED_DIR
    accepted.mkdir(parents=True, exist_ok=True)
    submitted: list[ledger.SubmittedJob] = []
    # Accepted files newer than the cursor: a crash may have left them without a job.
    with os.scandir(accepted) as entries:
        unconfirmed = sorted(entry.name for entry in entries if cursor is None or entry.name > cursor)
    for drop in settled_drops(inbox, limit):
        try:
            digest = fingerprint(drop)
            target = accepted / f"{time.time_ns():020d}-{digest}-{drop.name}"
            drop.rename(target)
        except OSError as error:  # removed or still locked by its writer: try again next tick
            logger.warning("inbox: could not take in %s: %s", drop, error)
            continue
        unconfirmed.append(target.name)
    newest = cursor
    for name in sorted(set(unconfirmed)):
        parsed = _parse_accepted(name)
        if parsed is None:
            continue  # not a name this sensor wrote
        external_id, original_name = parsed
        job = ledger.submit_job(
            database,
            ledger.JobRequest(
                source_uri=str((accepted / name).resolve()),
                # Named after the dropped file, not the accepted copy; the content hash keeps
                # two different files of the same name apart.
                video_id=readable_video_id(original_name, external_id),
                source_kind="inbox",
                external_id=external_id,
            ),
        )
        submitted.append(job)
        newest = name
    return submitted, newest


def build_inbox_sensor(settings: Settings) -> dg.SensorDefinition:
    """The inbox sensor for ``settings.inbox``, ticking every ``WORKER_POLL_MS`` (rounded up)."""
    inbox = settings.inbox
    enabled = settings.watches_inbox

    @dg.sensor(
        name=INBOX_SENSOR_NAME,
        minimum_interval_seconds=sensor_interval_seconds(settings.worker_poll_ms),
        default_status=default_status(enabled),
        description="Videos dropped into VIDEOQA_INBOX become jobs in the ledger (once per file content). "
        "Enabled when JOB_SOURCE_TYPE lists inbox, and always with the embedded database.",
    )
    def inbox_sensor(
        context: dg.SensorEvaluationContext, database: DatabaseResource
    ) -> dg.SensorResult | dg.SkipReason:
        gate = skip_reason(settings, enabled=enabled, how_to_enable="set JOB_SOURCE_TYPE to include inbox")
        if gate is not None:
            return gate
        try:
            jobs, cursor = take_in(inbox, database.get(), context.cursor)
        except TRANSIENT_DATABASE_ERRORS as error:
            context.log.warning(f"job ledger not reachable, skipping this tick: {error}")
            return dg.SkipReason(f"job ledger not reachable: {error}")
        except OSError as error:
            context.log.warning(f"inbox {inbox} cannot be read: {error}")
            return dg.SkipReason(f"inbox {inbox} cannot be read: {error}")
        for job in jobs:
            note = "" if job.created else " (already taken in)"
            context.log.info(f"inbox: job {job.job_id} for video {job.video_id}{note}")
        if not jobs and cursor == context.cursor:
            return dg.SkipReason(f"nothing new in {inbox}")
        return dg.SensorResult(cursor=cursor)

    return inbox_sensor

"""The inbox sensor: a video dropped into the watched folder becomes a job, once, and whole.

The embedded default's job source: ``VIDEOQA_INBOX`` (default ``$VIDEOQA_HOME/inbox``).

How a drop is taken in, so that neither a crash, a restart nor a slow writer loses, repeats or
truncates it (``VIDEOQA_INBOX_SETTLE_SECONDS``, the settle window, default 5 s):

1. A regular, non-hidden file whose size and mtime have not changed for the settle window, and
   that no process holds open for writing (every ``/proc/<pid>/fd`` this process may read: on
   Linux, the processes of the same user, or all of them as root), is moved (atomic rename, same
   file system) to ``.settling/<ns-time>-<size>-<mtime-ns>-<name>``, recording what it looked
   like when it was moved.
2. A settling file is fingerprinted (SHA-256 of its content, streamed) only once the settle window
   has passed *since the move* with its size and mtime as recorded and no open writer. A writer
   ``/proc`` cannot show (another container, another user) that writes on after the move changes
   them: the file is stamped again and waits a new window, so it is never fingerprinted
   half-written. It then moves to ``accepted/<ns-time>-<fingerprint>-<name>``.
3. A job is submitted for the accepted path with ``source_kind='inbox'`` and the fingerprint as
   ``external_id``: the same content dropped twice is one job.

Names are shortened (the extension kept, the cut on a character boundary) so that both prefixes
fit the file system's name limit: a name of 250 bytes is taken in like any other, and a drop
that cannot be moved never uses up the per-tick quota of the drops behind it.

A crash between the moves leaves a settling or accepted file without a job. The sensor's cursor
is the newest accepted name whose job is known to exist; every tick re-submits accepted files
newer than it (idempotent thanks to the fingerprint) before advancing it, and settling files are
picked up where they are. The ``accepted/`` folder keeps the originals the runs read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
#: Where drops wait out the settle window after their move (hidden: never taken for a drop).
SETTLING_DIR = ".settling"
#: The default of VIDEOQA_INBOX_SETTLE_SECONDS (see :class:`videoqa_pipeline.settings.Settings`).
SETTLE_SECONDS = 5.0
#: Names that are (still) being written by common copy tools.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download", ".filepart")
FILES_PER_TICK = 20
_CHUNK = 1 << 20
#: The longest prefix either folder adds: ``<20 digits>-<20 digits>-<20 digits>-``.
_PREFIX_BYTES = 63
_EXTENSION_BYTES = 16

#: Which of the given files some process holds open for writing, as ``(st_dev, st_ino)``.
OpenWriters = Callable[[Iterable[Path]], set[tuple[int, int]]]


def fingerprint(path: Path) -> str:
    """SHA-256 of the file's content (hex, first 32 characters), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def _opened_for_writing(pid: str, fd: str) -> bool:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)
    except (OSError, ValueError, IndexError):
        return False
    return False


def open_for_writing(paths: Iterable[Path]) -> set[tuple[int, int]]:
    """The files among ``paths`` that a process holds open for writing, as ``(st_dev, st_ino)``.

    Reads every ``/proc/<pid>/fd`` this process may read (its user's processes; all as root). A
    writer elsewhere (another container, another user, a network share's client) is not seen:
    the settle window after the move catches those. Without ``/proc`` (not Linux) nothing is seen.
    """
    wanted: set[tuple[int, int]] = set()
    for path in paths:
        try:
            stat = path.stat(follow_symlinks=False)
        except OSError:
            continue
        wanted.add((stat.st_dev, stat.st_ino))
    found: set[tuple[int, int]] = set()
    if not wanted:
        return found
    try:
        pids = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone meanwhile, or not ours to inspect
            continue
        for fd in fds:
            try:
                stat = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            key = (stat.st_dev, stat.st_ino)
            if key in wanted and key not in found and _opened_for_writing(pid, fd):
                found.add(key)
    return found


def settled_drops(
    inbox: Path, limit: int | None = None, settle_seconds: float = SETTLE_SECONDS
) -> list[Path]:
    """Files in ``inbox`` that look ready: regular, non-hidden, not partial, unchanged lately.

    Oldest first, at most ``limit`` (all when None).
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


def fitted_name(name: str, room: int) -> str:
    """``name`` as valid UTF-8 (bytes that are not become U+FFFD, so the job's path names the file)
    cut to at most ``room`` bytes, keeping a short extension and whole characters."""
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if len(name.encode("utf-8")) <= room:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension.encode("utf-8")) > _EXTENSION_BYTES:
        stem, extension = name, ""
    suffix = f".{extension}" if extension else ""
    budget = room - len(suffix.encode("utf-8"))
    cut = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
    return f"{cut}{suffix}"


def _name_room(folder: Path) -> int:
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    return max(32, int(name_max) - _PREFIX_BYTES)


@dataclass(frozen=True)
class _Settling:
    """A drop in ``.settling/``: when it was moved, and its size and mtime then."""

    path: Path
    moved_ns: int
    size: int
    mtime_ns: int
    name: str

    @classmethod
    def parse(cls, path: Path) -> _Settling | None:
        parts = path.name.split("-", 3)
        if len(parts) != 4 or not all(part.isdigit() for part in parts[:3]):
            return None  # not a name this sensor wrote
        return cls(path, int(parts[0]), int(parts[1]), int(parts[2]), parts[3])


def _mtime_mark(stat: os.stat_result) -> int:
    """The mtime in nanoseconds as an unsigned number (digits only in a name, even before 1970)."""
    return stat.st_mtime_ns & 0xFFFF_FFFF_FFFF_FFFF


def _stage(path: Path, settling: Path, name: str) -> Path:
    """Move ``path`` (or stamp it again) into ``settling`` under a name recording its state now."""
    stat = path.stat(follow_symlinks=False)
    target = settling / f"{time.time_ns():020d}-{stat.st_size}-{_mtime_mark(stat)}-{name}"
    path.rename(target)
    return target


def _parse_accepted(name: str) -> tuple[str, str] | None:
    """``(fingerprint, original name)`` of a name this sensor wrote, else None."""
    parts = name.split("-", 2)
    return (parts[1], parts[2]) if len(parts) == 3 and len(parts[1]) == 32 else None


def _stage_new_drops(
    inbox: Path, settling: Path, limit: int, settle_seconds: float, open_writers: OpenWriters
) -> None:
    """Step 1: move up to ``limit`` settled drops no process is writing into ``.settling/``."""
    candidates = settled_drops(inbox, None, settle_seconds)
    busy = open_writers(candidates) if candidates else set()
    room = _name_room(settling)
    moved = 0
    for drop in candidates:
        if moved >= limit:
            break
        try:
            stat = drop.stat(follow_symlinks=False)
            if (stat.st_dev, stat.st_ino) in busy:
                continue  # its writer still has it open
            _stage(drop, settling, fitted_name(drop.name, room))
            moved += 1
        except OSError as error:  # removed meanwhile, or not ours to move: the others go on
            logger.warning("inbox: could not take in %s: %s", drop.name[:80], error)


def _accept_settled(
    settling: Path, accepted: Path, limit: int, settle_seconds: float, open_writers: OpenWriters
) -> list[str]:
    """Step 2: fingerprint and accept settling files that stayed unchanged; returns accepted names."""
    with os.scandir(settling) as entries:
        waiting = sorted(
            (
                item
                for entry in entries
                if entry.is_file(follow_symlinks=False)
                if (item := _Settling.parse(Path(entry.path))) is not None
            ),
            key=lambda item: item.moved_ns,
        )
    busy = open_writers(item.path for item in waiting) if waiting else set()
    names: list[str] = []
    for item in waiting:
        if len(names) >= limit:
            break
        try:
            name = _accept_one(item, settling, accepted, settle_seconds, busy)
        except OSError as error:
            logger.warning("inbox: could not accept %s: %s", item.name[:80], error)
            continue
        if name is not None:
            names.append(name)
    return names


def _accept_one(
    item: _Settling, settling: Path, accepted: Path, settle_seconds: float, busy: set[tuple[int, int]]
) -> str | None:
    """Accept one settling file when it is ready; stamp it again when it changed since its move."""
    stat = item.path.stat(follow_symlinks=False)
    if (stat.st_size, _mtime_mark(stat)) != (item.size, item.mtime_ns):
        logger.info("inbox: %s changed after it was taken: waiting for it to settle", item.name[:80])
        _stage(item.path, settling, item.name)
        return None
    if (stat.st_dev, stat.st_ino) in busy or time.time_ns() - item.moved_ns < settle_seconds * 1e9:
        return None
    digest = fingerprint(item.path)
    after = item.path.stat(follow_symlinks=False)
    if (after.st_size, _mtime_mark(after)) != (item.size, item.mtime_ns):  # written while hashed
        _stage(item.path, settling, item.name)
        return None
    target = accepted / f"{time.time_ns():020d}-{digest}-{item.name}"
    item.path.rename(target)
    return target.name


def take_in(
    inbox: Path,
    database: Database,
    cursor: str | None,
    limit: int = FILES_PER_TICK,
    *,
    settle_seconds: float = SETTLE_SECONDS,
    open_writers: OpenWriters = open_for_writing,
) -> tuple[list[ledger.SubmittedJob], str | None]:
    """One pass over the inbox (see the module docstring).

    Args:
        inbox: The watched folder (created when missing).
        database: The ledger's database.
        cursor: The newest accepted name known to have its job (None at first).
        limit: Most drops moved, and most files accepted, per pass.
        settle_seconds: The settle window (VIDEOQA_INBOX_SETTLE_SECONDS), before and after the move.
        open_writers: Which files a process holds open for writing (:func:`open_for_writing`).

    Returns:
        The jobs submitted (``created`` False for content already taken in) and the new cursor.
    """
    accepted, settling = inbox / ACCEPTED_DIR, inbox / SETTLING_DIR
    accepted.mkdir(parents=True, exist_ok=True)
    settling.mkdir(exist_ok=True)
    submitted: list[ledger.SubmittedJob] = []
    # Accepted files newer than the cursor: a crash may have left them without a job.
    with os.scandir(accepted) as entries:
        unconfirmed = sorted(entry.name for entry in entries if cursor is None or entry.name > cursor)
    _stage_new_drops(inbox, settling, limit, settle_seconds, open_writers)
    unconfirmed.extend(_accept_settled(settling, accepted, limit, settle_seconds, open_writers))
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
    settle_seconds = settings.inbox_settle_seconds

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
            jobs, cursor = take_in(inbox, database.get(), context.cursor, settle_seconds=settle_seconds)
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

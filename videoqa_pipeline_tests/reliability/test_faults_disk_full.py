"""The local blob store's disk fills up: jobs fail with an error that names the path and says the
disk is full, no partial blob appears at a final key, no temporary file stays behind, a blob stored
earlier is untouched, and the job runs once space is freed.

The full disk is a real one: a 1 MiB tmpfs mounted as ``VIDEOQA_BLOB_DIR`` (the kernel's own
ENOSPC, at whatever point of the copy it happens). Mounting needs root (CAP_SYS_ADMIN); where that
is refused the test skips with the reason. Runs are real runs of the pipeline in this process, on
the embedded PostgreSQL, with the models off (the blob writes are what matters).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline.definitions import build_definitions
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.blobs import TEMPORARY_PREFIX, LocalBlobStore, blob_key
from videoqa_pipeline_tests.jobs.conftest import (  # noqa: F401 - fixtures
    QUIET,
    LedgerDatabase,
    embedded_admin_url,
    embedded_db,
    instance,
    jobs_home,
    tiny_video,
    videos_dir,
)
from videoqa_pipeline_tests.jobs.test_runs import _run_job
from videoqa_pipeline_tests.reliability.fault_support import as_url, database_rows

TMPFS_SIZE = "1m"
#: Room left once the disk is "full": small writes fit, a video does not.
HEADROOM_BYTES = 4096


@pytest.fixture()
def small_disk() -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards; skipped when this process may not mount."""
    mount_point = Path(tempfile.mkdtemp(prefix="videoqa-small-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root/CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            mount_point.rmdir()


def fill_disk(root: Path, headroom: int) -> Path:
    """Write a filler file until the disk is full, then give back ``headroom`` bytes."""
    filler = root / "filler.bin"
    chunk = b"\0" * 65536
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    with filler.open("r+b") as handle:
        handle.truncate(max(0, filler.stat().st_size - headroom))
    return filler


def _temporaries(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.name.startswith(TEMPORARY_PREFIX)]


@pytest.fixture()
def disk_settings(
    small_disk: Path,
    embedded_db: LedgerDatabase,  # noqa: F811
    jobs_home: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    env = {
        **QUIET,
        "DATABASE_URL": as_url(embedded_db.url),
        "VIDEOQA_HOME": str(jobs_home),
        "VIDEOQA_BLOB_DIR": str(small_disk),
        "WORKER_MAX_ATTEMPTS": "1",
    }
    monkeypatch.setenv("DATABASE_URL", env["DATABASE_URL"])
    return Settings.from_env(env).validate()


def test_a_full_blob_disk_fails_jobs_readably_and_leaves_no_partial_blob(
    small_disk: Path,
    disk_settings: Settings,
    embedded_db: LedgerDatabase,  # noqa: F811
    instance: dg.DagsterInstance,  # noqa: F811
    tiny_video: Path,  # noqa: F811
) -> None:
    definitions = build_definitions(disk_settings)
    db = embedded_db.database
    store = LocalBlobStore(small_disk)

    def run(job_id: int) -> dg.ExecuteInProcessResult:
        return _run_job(job_id, definitions, disk_settings, db, instance)[1]

    # A video stored while there was room.
    stored = ledger.submit_job(db, ledger.JobRequest(str(tiny_video), video_id="stored-before")).job_id
    assert run(stored).success
    original_key = blob_key("stored-before", "source", "original.mp4")
    original_digest = hashlib.sha256(store.get_bytes(original_key)).hexdigest()
    rows_before = database_rows(db, "stored-before")
    assert rows_before["source_video"] == 1 and rows_before["keyframes"] >= 1

    filler = fill_disk(small_disk, HEADROOM_BYTES)

    # Re-processing the stored video: the new copy of the original does not fit.
    ledger.requeue_job(db, stored, force=True)
    assert not run(stored).success
    again = ledger.get_job(db, stored)
    assert (again.status, again.failed_step, again.transient) == ("failed", "source_video", True)
    error = again.error or ""
    assert "BlobStoreFullError" in error and "full" in error and str(small_disk) in error, error
    assert original_key in error and "VIDEOQA_BLOB_DIR" in error, error
    assert hashlib.sha256(store.get_bytes(original_key)).hexdigest() == original_digest
    assert database_rows(db, "stored-before") == rows_before, "the failed run changed the stored rows"

    # A new video: nothing of it may appear, neither blob nor row.
    new = ledger.submit_job(db, ledger.JobRequest(str(tiny_video), video_id="never-stored")).job_id
    assert not run(new).success
    failed = ledger.get_job(db, new)
    assert (failed.status, failed.attempts, failed.failed_step) == ("failed", 1, "source_video")
    assert "is full" in (failed.error or ""), failed.error
    assert not store.exists(blob_key("never-stored", "source", "original.mp4"))
    assert list(store.list_keys("never-stored/")) == []
    assert set(database_rows(db, "never-stored").values()) == {0}
    assert _temporaries(small_disk) == [], "a temporary file was left behind"

    # Space freed: the same job runs to the end.
    filler.unlink()
    ledger.requeue_job(db, new)
    assert run(new).success
    assert ledger.get_job(db, new).status == "succeeded"
    assert database_rows(db, "never-stored")["source_video"] == 1
    assert _temporaries(small_disk) == []

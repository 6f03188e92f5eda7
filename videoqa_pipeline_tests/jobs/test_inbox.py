"""The inbox folder: a dropped video becomes one job, whatever restarts or crashes happen."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg

from videoqa_pipeline.defs.sensors.inbox_sensor import ACCEPTED_DIR, build_inbox_sensor, fingerprint, take_in
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline_tests.jobs.conftest import LedgerDatabase


def _drop(source: Path, inbox: Path, name: str, age_seconds: float = 10.0) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    target = inbox / name
    shutil.copyfile(source, target)
    past = time.time() - age_seconds
    os.utime(target, (past, past))
    return target


def _inbox_jobs(db: LedgerDatabase) -> list[ledger.Job]:
    return [job for job in ledger.list_jobs(db.database, limit=100) if job.source_kind == "inbox"]


def test_a_dropped_video_becomes_one_job_across_restarts(
    embedded_db: LedgerDatabase, tiny_video: Path, videos_dir: Path, instance: dg.DagsterInstance
) -> None:
    inbox = videos_dir / "inbox-restarts"
    settings = Settings.from_env(
        {
            "VIDEOQA_HOME": str(embedded_db.home),
            "VIDEOQA_INBOX": str(inbox),
            "VIDEOQA_INBOX_SETTLE_SECONDS": "0.5",
        }
    ).validate()
    sensor = build_inbox_sensor(settings)
    _drop(tiny_video, inbox, "talk.mp4")
    _drop(tiny_video, inbox, ".hidden.mp4")
    _drop(tiny_video, inbox, "copying.mp4.part")
    fresh = _drop(tiny_video, inbox, "just-arriving.mp4", age_seconds=-60)  # written to this very moment
    context = dg.build_sensor_context(instance=instance, resources={"database": embedded_db.resource()})
    # The first tick moves the settled drop aside; it is fingerprinted once it stayed unchanged for
    # the settle window after the move.
    assert isinstance(sensor(context), dg.SkipReason) and not (inbox / "talk.mp4").exists()
    time.sleep(0.6)
    result = sensor(context)
    assert isinstance(result, dg.SensorResult) and result.cursor
    (job,) = _inbox_jobs(embedded_db)
    accepted = Path(job.source_uri)
    assert (
        accepted.parent == inbox / ACCEPTED_DIR and accepted.name.endswith("-talk.mp4") and accepted.is_file()
    )
    assert job.external_id == fingerprint(accepted) and job.status == "pending"
    assert job.video_id == f"talk-{job.external_id[:8]}", "named after the dropped file"
    assert not (inbox / "talk.mp4").exists()
    assert (inbox / ".hidden.mp4").exists() and (inbox / "copying.mp4.part").exists() and fresh.exists()
    # A restart: the sensor starts over with no cursor; nothing is submitted twice.
    again = sensor(dg.build_sensor_context(instance=instance, resources={"database": embedded_db.resource()}))
    assert isinstance(again, dg.SensorResult | dg.SkipReason)
    assert len(_inbox_jobs(embedded_db)) == 1
    # The same content dropped again under another name is still one job.
    fresh.unlink()
    _drop(tiny_video, inbox, "talk-copy.mp4")
    jobs, _ = take_in(inbox, embedded_db.database, result.cursor, settle_seconds=0)
    assert [job.created for job in jobs] == [False] and len(_inbox_jobs(embedded_db)) == 1


def test_a_crash_between_accepting_and_submitting_is_recovered(
    embedded_db: LedgerDatabase, videos_dir: Path, tiny_video: Path
) -> None:
    inbox = videos_dir / "inbox-crash"
    _drop(tiny_video, inbox, "first.mp4")
    jobs, cursor = take_in(inbox, embedded_db.database, None, settle_seconds=0)
    assert len(jobs) == 1 and jobs[0].created
    # Simulate the crash: a file accepted (renamed) whose job was never written.
    other = inbox / "other.mp4"
    other.write_bytes(tiny_video.read_bytes() + b"\0")  # different content, so a new fingerprint
    digest = fingerprint(other)
    orphan = inbox / ACCEPTED_DIR / f"{time.time_ns():020d}-{digest}-other.mp4"
    other.rename(orphan)
    recovered, new_cursor = take_in(inbox, embedded_db.database, cursor, settle_seconds=0)
    assert [job.created for job in recovered] == [True]
    assert ledger.get_job(embedded_db.database, recovered[0].job_id).source_uri == str(orphan.resolve())
    assert new_cursor == orphan.name
    assert take_in(inbox, embedded_db.database, new_cursor, settle_seconds=0) == ([], new_cursor)

"""The inbox takes in every drop once, whole, and one bad drop never holds the others back.

Two classes of trouble, each through the real inbox sensor against the real ledger:

* **Names near the file system's limit.** ``accepted/<time>-<fingerprint>-`` adds 54 characters
  to a name; a name of 250 bytes then no longer fits (``ENAMETOOLONG``), and twenty of them used
  to fill every tick's quota, so no other drop was ever taken in.
* **Writers that pause.** A copy that stops for a few seconds used to look settled: the file was
  moved and fingerprinted half-written while its writer went on writing into ``accepted/``. A file
  open for writing (seen in ``/proc``) is not taken, and a file that changes within the settle
  window after it was moved is not submitted until it settles, for writers ``/proc`` cannot show
  (another container, another user).
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.defs.sensors.inbox_sensor import build_inbox_sensor, take_in
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline_tests.reliability.job_harness import JobHarness

SETTLE = "1"
CHUNK = 1 << 20

#: A writer that writes a chunk, pauses, writes another chunk and closes the file.
PAUSING_WRITER = """
import sys, time
path, pause, chunk = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
with open(path, "wb") as handle:
    handle.write(b"a" * chunk)
    handle.flush()
    print("paused", flush=True)
    time.sleep(pause)
    handle.write(b"b" * chunk)
"""


def _settings(harness: JobHarness, inbox: Path) -> Settings:
    return Settings.from_env(
        {
            **harness.env,
            "JOB_SOURCE_TYPE": "postgres,inbox",
            "VIDEOQA_INBOX": str(inbox),
            "VIDEOQA_INBOX_SETTLE_SECONDS": SETTLE,
        }
    ).validate()


class _Ticker:
    """The inbox sensor of one deployment, ticked the way the daemon ticks it (cursor kept)."""

    def __init__(self, harness: JobHarness, settings: Settings) -> None:
        self.sensor = build_inbox_sensor(settings)
        self.instance = harness.instance
        self.resource = DatabaseResource(database_url=settings.database_url, home=str(settings.home))
        self.cursor: str | None = None
        self.ticks = 0

    def tick(self) -> None:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"database": self.resource}
        )
        result = self.sensor(context)
        self.ticks += 1
        if isinstance(result, dg.SensorResult) and result.cursor is not None:
            self.cursor = result.cursor

    def until(self, done: Callable[[], bool], seconds: float, every: float = 0.25) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.tick()
            if done():
                return True
            time.sleep(every)
        return done()


def _inbox_jobs(harness: JobHarness, inbox: Path) -> list[ledger.Job]:
    accepted = str((inbox / "accepted").resolve())
    return [
        job
        for job in ledger.list_jobs(harness.database, limit=1000)
        if job.source_kind == "inbox" and job.source_uri.startswith(accepted + os.sep)
    ]


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_long_names_are_taken_in_without_starving_other_drops(
    harness: JobHarness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = tmp_path / "inbox-long"
    inbox.mkdir()
    names = [f"{n:02d}" + "l" * 244 + ".mp4" for n in range(20)]  # 250 bytes
    names += [f"{n}" + "é" * 124 + ".mp4" for n in range(3)]  # 253 bytes of UTF-8
    for position, name in enumerate(names):
        (inbox / name).write_bytes(name.encode())
        _age(inbox / name, 1000 - position)  # oldest first: they come before the short name
    (inbox / "short.mp4").write_bytes(b"short")
    _age(inbox / "short.mp4", 100)
    latin = inbox / os.fsdecode(b"caf\xe9 latin-1.mp4")  # a name that is not UTF-8
    latin.write_bytes(b"latin-1")
    _age(latin, 50)
    drops = len(names) + 2
    ticker = _Ticker(harness, _settings(harness, inbox))

    with caplog.at_level(logging.WARNING, logger="videoqa_pipeline"):
        assert ticker.until(lambda: len(_inbox_jobs(harness, inbox)) == drops, 15), [
            path.name[:20] for path in inbox.iterdir()
        ]
    jobs = _inbox_jobs(harness, inbox)
    assert len({job.external_id for job in jobs}) == drops, "one job per drop"
    assert {path.name for path in inbox.iterdir()} <= {"accepted", ".settling"}, "nothing left behind"
    for job in jobs:
        accepted = Path(job.source_uri)
        assert len(accepted.name.encode()) <= 255 and accepted.is_file()
        assert job.external_id == hashlib.sha256(accepted.read_bytes()).hexdigest()[:32]
        assert job.video_id and len(job.video_id) <= 64, job.video_id
    short = [job for job in jobs if Path(job.source_uri).name.endswith("-short.mp4")]
    assert len(short) == 1 and short[0].video_id is not None and short[0].video_id.startswith("short-")
    assert [Path(job.source_uri).read_bytes() for job in jobs if "latin-1" in job.source_uri] == [b"latin-1"]
    assert not [record.message for record in caplog.records if "inbox" in record.name], "no warning per tick"


def test_a_writer_that_pauses_is_not_taken_half_written(harness: JobHarness, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox-pausing"
    inbox.mkdir()
    drop = inbox / "slow-copy.mp4"
    writer = subprocess.Popen(
        [sys.executable, "-c", PAUSING_WRITER, str(drop), "4", str(CHUNK)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "paused"
        ticker = _Ticker(harness, _settings(harness, inbox))
        taken = ticker.until(lambda: bool(_inbox_jobs(harness, inbox)), 15)
        assert writer.wait(timeout=10) == 0
    finally:
        writer.kill()
    assert taken, "the file is taken in once its writer is done"
    [job] = _inbox_jobs(harness, inbox)
    content = Path(job.source_uri).read_bytes()
    assert content == b"a" * CHUNK + b"b" * CHUNK, f"taken whole, not at {len(content)} bytes"
    assert job.external_id == hashlib.sha256(content).hexdigest()[:32], "fingerprint of the whole file"


def test_a_writer_proc_cannot_show_is_caught_by_the_settle_window_after_the_move(
    harness: JobHarness, tmp_path: Path
) -> None:
    """A writer in another container: no open file in any /proc this process can read. Its pause
    (2.5 s) is longer than the settle window (1.5 s), so the file is moved; the writer goes on
    within the window after the move, and the file waits until it settles again."""
    inbox = tmp_path / "inbox-invisible"
    inbox.mkdir()
    drop = inbox / "remote-copy.mp4"
    writer = subprocess.Popen(
        [sys.executable, "-c", PAUSING_WRITER, str(drop), "2.5", str(CHUNK)],
        stdout=subprocess.PIPE,
        text=True,
    )
    cursor: str | None = None
    submitted: list[ledger.SubmittedJob] = []
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "paused"
        deadline = time.monotonic() + 15
        moved = False
        while not submitted and time.monotonic() < deadline:
            submitted, cursor = take_in(
                inbox, harness.database, cursor, settle_seconds=1.5, open_writers=lambda paths: set()
            )
            moved = moved or not drop.exists()
            time.sleep(0.2)
        assert writer.wait(timeout=10) == 0
    finally:
        writer.kill()
    assert moved, "the pause looked settled: the file was moved while its writer held it"
    [submission] = submitted
    job = ledger.get_job(harness.database, submission.job_id)
    content = Path(job.source_uri).read_bytes()
    assert content == b"a" * CHUNK + b"b" * CHUNK, f"submitted at {len(content)} bytes"
    assert job.external_id == hashlib.sha256(content).hexdigest()[:32]

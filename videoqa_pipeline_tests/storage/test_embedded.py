"""The embedded server shared by several processes, as under ``dagster dev``.

Each test uses its own ``VIDEOQA_HOME`` and real subprocesses (``_worker.py``) so that joining,
the atexit release, SIGKILL and stale files behave exactly as in production.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from videoqa_pipeline.storage.embedded import (
    PGDATA_DIRNAME,
    embedded_server_status,
    stop_embedded_server,
)
from videoqa_pipeline.storage.migrations import MIGRATIONS
from videoqa_pipeline.storage.schema import TABLES

from .conftest import create_scratch_database

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = "videoqa_pipeline_tests.storage._worker"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _spawn(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", WORKER, *args],
        cwd=REPO_ROOT,
        env={**_env(), **(extra_env or {})},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(process: subprocess.Popen[str], timeout: float = 120) -> dict[str, object]:
    """The JSON line a worker prints once it has joined (and written)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = process.stdout.readline()
    if not line:
        _, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        pytest.fail(f"worker exited with {process.returncode} before reporting:\n{stderr[-3000:]}")
    return dict(json.loads(line))


def _finish(process: subprocess.Popen[str]) -> None:
    """Let a ``join`` worker exit normally and check it did."""
    _, stderr = process.communicate("exit\n", timeout=60)
    assert process.returncode == 0, stderr[-3000:]


def postmasters(home: Path) -> list[psutil.Process]:
    """Live postmaster processes serving ``home/pgdata`` (zombies and backends excluded)."""
    pgdata = str((home / PGDATA_DIRNAME).resolve())
    found = []
    for process in psutil.process_iter(["name", "cmdline", "status"]):
        info = process.info
        if (
            info["name"] == "postgres"
            and info["status"] != psutil.STATUS_ZOMBIE
            and info["cmdline"]
            and pgdata in info["cmdline"]
        ):
            found.append(process)
    return found


def _wait_until(condition: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture()
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    if (home / PGDATA_DIRNAME).exists():
        stop_embedded_server(home, force=True)  # never leak a server, whatever the test did


def test_processes_share_one_server_and_the_last_one_stops_it(home: Path) -> None:
    workers = [_spawn("join", str(home), f"video-{number}") for number in range(3)]
    reports = [_report(worker) for worker in workers]

    assert {report["url"] for report in reports} == {reports[0]["url"]}
    assert all(report["rows"] == 1 for report in reports)
    assert len(postmasters(home)) == 1
    status = embedded_server_status(home)
    assert status.running and sorted(status.user_pids) == sorted(int(str(r["pid"])) for r in reports)
    with psycopg.connect(str(reports[0]["url"])) as conn:
        row = conn.execute("SELECT count(DISTINCT video_id) FROM videoqa_scenes").fetchone()
    assert row is not None and row[0] == 3

    _finish(workers[0])
    _finish(workers[1])
    assert embedded_server_status(home).running, "the server stopped while a user was still alive"

    _finish(workers[2])
    assert not embedded_server_status(home).running
    assert postmasters(home) == []
    assert not (home / PGDATA_DIRNAME / "postmaster.pid").exists(), "the server was killed, not stopped"


def test_data_survives_a_restart(home: Path) -> None:
    first = _spawn("join", str(home), "kept-video")
    _report(first)
    _finish(first)
    assert not embedded_server_status(home).running

    second = _spawn("join", str(home), "second-video")
    url = str(_report(second)["url"])
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT video_id FROM videoqa_scenes ORDER BY video_id").fetchall()
    _finish(second)

    assert rows == [("kept-video",), ("second-video",)]


def test_sigkilled_owner_neither_blocks_nor_leaks_the_server(home: Path) -> None:
    owner = _spawn("hold", str(home))
    _report(owner)
    server_pid = embedded_server_status(home).postmaster_pid
    owner.send_signal(signal.SIGKILL)
    owner.wait(30)

    status = embedded_server_status(home)
    assert status.running and status.user_pids == (), "a killed process must not count as a user"

    survivor = _spawn("join", str(home), "after-kill")
    assert _report(survivor)["rows"] == 1
    assert embedded_server_status(home).postmaster_pid == server_pid  # joined, not a second server
    _finish(survivor)

    assert not embedded_server_status(home).running, "the last live user must stop the server"
    assert postmasters(home) == []


def test_a_server_whose_users_all_died_stops_by_itself(home: Path) -> None:
    """No exit hook runs on SIGKILL (or on SIGTERM without a handler): the watchdog stops the server."""
    owner = _spawn("hold", str(home), extra_env={"VIDEOQA_EMBEDDED_IDLE_SECONDS": "1"})
    _report(owner)
    assert embedded_server_status(home).running
    owner.send_signal(signal.SIGKILL)
    owner.wait(30)
    assert _wait_until(lambda: not embedded_server_status(home).running, timeout=30)
    assert postmasters(home) == []
    assert not (home / PGDATA_DIRNAME / "postmaster.pid").exists(), "stopped cleanly, not killed"


def test_restart_after_the_server_itself_was_sigkilled(home: Path) -> None:
    owner = _spawn("hold", str(home))
    _report(owner)
    server_pid = embedded_server_status(home).postmaster_pid
    assert server_pid is not None
    for process in postmasters(home):
        process.send_signal(signal.SIGKILL)
    owner.send_signal(signal.SIGKILL)
    owner.wait(30)
    assert _wait_until(lambda: not postmasters(home))
    assert (home / PGDATA_DIRNAME / "postmaster.pid").exists()  # the stale file a crash leaves

    fresh = _spawn("join", str(home), "after-crash")
    assert _report(fresh, timeout=180)["rows"] == 1
    new_pid = embedded_server_status(home).postmaster_pid
    _finish(fresh)

    assert new_pid is not None and new_pid != server_pid
    assert not embedded_server_status(home).running


def test_concurrent_ensure_schema_migrates_once(embedded_home: Path, tmp_path: Path) -> None:
    from videoqa_pipeline.storage.embedded import embedded_database_url

    admin_url = embedded_database_url(embedded_home)
    url = create_scratch_database(admin_url)
    go_file = tmp_path / "go"
    workers = [_spawn("migrate", url, str(go_file)) for _ in range(4)]
    time.sleep(1.0)  # let them import and wait on the go file, so they really race
    go_file.touch()

    results = []
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr[-3000:]
        results.append(json.loads(stdout.strip().splitlines()[-1]))

    every_version = [migration.version for migration in MIGRATIONS]
    assert sorted(results, key=len) == [[], [], [], every_version], (
        "exactly one process applies the migrations"
    )
    with psycopg.connect(url) as conn:
        versions = conn.execute("SELECT version FROM videoqa_schema_migrations").fetchall()
        tables = {
            row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'videoqa_%'")
        }
    assert versions == [(version,) for version in every_version]
    assert {spec.name for spec in TABLES.values()} | {"videoqa_schema_migrations"} <= tables


def test_a_starting_server_is_never_taken_for_a_stale_one(home: Path) -> None:
    """A postmaster that has not written its pid yet (its ``pg_ctl`` gave up waiting on a starved
    machine) keeps its lock file: deleting it made a second start fail on the first one's shared
    memory, and the first shut down once it saw its lock file gone."""
    from videoqa_pipeline.storage import embedded

    owner = _spawn("join", str(home), "starting")
    _report(owner)
    pgdata = (home / PGDATA_DIRNAME).resolve()
    pidfile = pgdata / "postmaster.pid"
    written = pidfile.read_text()
    server_pid = embedded_server_status(home).postmaster_pid
    try:
        pidfile.write_text("")  # as the postmaster has it between creating and filling the file
        embedded._remove_stale_postmaster_pid(pgdata)
        assert pidfile.exists(), "the lock file of a live postmaster was removed"
        assert embedded._server_process(pgdata) == server_pid
    finally:
        pidfile.write_text(written)
    _finish(owner)
    assert not embedded_server_status(home).running

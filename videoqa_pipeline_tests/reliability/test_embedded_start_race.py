"""The embedded PostgreSQL starts quietly and at the first attempt, however processes race for it.

On a fresh ``dagster dev`` right after a CLI command had started and stopped the server, starting
it failed twice (``pg_ctl ... died with SIGSEGV``, thirty lines of server log on stderr each time)
before a third attempt worked. The processes here are shaped like Dagster's code server (a gRPC
server with calls in flight, the database first touched from a request handler), they start at
once against a fresh ``VIDEOQA_HOME``, and one more starts right after the last one stopped the
server. Every one must succeed and write nothing at all to stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from videoqa_pipeline.storage.embedded import PGDATA_DIRNAME, embedded_server_status, stop_embedded_server

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = "videoqa_pipeline_tests.reliability._grpc_embedded_user"
RACERS = 4


@pytest.fixture()
def fresh_home() -> Iterator[Path]:
    # Outside pytest's temp root: the server runs as another user when tests run as root, and
    # pytest keeps its root private (0700).
    home = Path(tempfile.mkdtemp(prefix="videoqa-embedded-race-")) / "home"
    yield home
    if (home / PGDATA_DIRNAME).exists():
        stop_embedded_server(home, force=True)
    shutil.rmtree(home.parent, ignore_errors=True)


def _spawn(home: Path, mode: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", WORKER, str(home), mode],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _report(process: subprocess.Popen[str]) -> dict[str, object]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        _, stderr = process.communicate(timeout=60)
        pytest.fail(f"worker exited with {process.returncode} before reporting:\n{stderr[-4000:]}")
    return dict(json.loads(line))


def _finish(process: subprocess.Popen[str], name: str) -> str:
    """Let the worker exit; return its whole stderr after checking its exit status."""
    _, stderr = process.communicate("exit\n", timeout=120)
    assert process.returncode == 0, f"{name} exited with {process.returncode}:\n{stderr[-4000:]}"
    return stderr


def _start_and_stop(home: Path, name: str) -> str:
    """One process starts the server (or finds it), queries it, and stops it as a CLI command does."""
    worker = _spawn(home, "once")
    report = _report(worker)
    assert report["answer"] == 1
    stderr = _finish(worker, name)
    assert not embedded_server_status(home).running, f"{name}: the last user did not stop the server"
    return stderr


# One round in the main suite (every start in it forked a gRPC process before the fix, which gRPC
# reports on stderr every time; the crash itself came one start in three to six); more with
# ``-m reliability``.
@pytest.mark.parametrize("rounds", [1, pytest.param(5, marks=pytest.mark.reliability)])
def test_racing_starts_and_a_start_right_after_a_stop_are_quiet(fresh_home: Path, rounds: int) -> None:
    stderr: dict[str, str] = {}
    for round_number in range(rounds):
        stderr[f"round {round_number}: CLI start and stop"] = _start_and_stop(
            fresh_home, f"round {round_number} CLI"
        )
        racers = [_spawn(fresh_home, "hold") for _ in range(RACERS)]
        reports = [_report(racer) for racer in racers]
        assert {str(report["url"]) for report in reports} == {str(reports[0]["url"])}, "one server for all"
        assert all(report["answer"] == 1 for report in reports)
        status = embedded_server_status(fresh_home)
        assert status.running and sorted(status.user_pids) == sorted(int(str(r["pid"])) for r in reports)
        for number, racer in enumerate(racers):
            stderr[f"round {round_number}: racer {number}"] = _finish(racer, f"racer {number}")
        assert not embedded_server_status(fresh_home).running
        stderr[f"round {round_number}: start right after the stop"] = _start_and_stop(
            fresh_home, f"round {round_number} restart"
        )

    noisy = {name: text for name, text in stderr.items() if text.strip()}
    assert not noisy, "stderr must stay empty:\n" + "\n".join(
        f"--- {name}:\n{text[-2500:]}" for name, text in noisy.items()
    )

"""Start, query and stop a real ``dagster dev`` the way a user runs it, for end-to-end tests.

``dagster dev`` is a tree of processes (the CLI, a code server and its gRPC child, the
webserver, the daemon and one run worker per run). Started in the background it ignores
SIGINT and may outlive SIGTERM to its parent alone, so it is started in a new session
(its own process group) and stopped by signalling that whole group: SIGTERM, then SIGKILL
after a grace period. :meth:`DagsterDev.stop` reports any process of the group that is
still alive afterwards, so a test can assert that nothing lingers.

Everything talks to 127.0.0.1 only: the webserver binds to loopback and GraphQL is plain
HTTP through :mod:`urllib`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]

# Settings that would point the pipeline somewhere other than the zero-setup default
# (embedded PostgreSQL, local blobs, offline models): a user's first `dagster dev` has none.
NON_DEFAULT_SETTINGS = (
    "DATABASE_URL",
    "STORAGE_TYPE",
    "METADATA_STORAGE",
    "FILE_STORAGE",
    "VIDEOQA_BLOB_DIR",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "VIDEOQA_AI_PROVIDER",
    "VIDEOQA_ASR_PROVIDER",
    "VIDEOQA_VISION_PROVIDER",
    "VIDEOQA_EMBED_PROVIDER",
    "VIDEOQA_ASK_PROVIDER",
    *(
        f"VIDEOQA_{protocol}_{setting}"
        for protocol in ("ASR", "VISION", "EMBED", "ASK")
        for setting in ("BASE_URL", "API_KEY", "MODEL")
    ),
    "VIDEOQA_CHAT_MODEL",
    "JOB_SOURCE_TYPE",
    "MAX_FRAMES_PER_VIDEO",
    "ENABLE_TRANSCRIPTION",
    "ENABLE_VISION_ANALYSIS",
    "ENABLE_EMBEDDINGS",
    "VIDEOQA_PARTITION_WORKING_SET",
)

TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
TERMINAL_BACKFILL_STATUSES = frozenset(
    {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "FAILING"}
)


class DagsterDevError(RuntimeError):
    """``dagster dev`` did not start, or its GraphQL API answered with an error."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass
class DagsterDev:
    """A running ``dagster dev`` in its own process group.

    Attributes:
        process: The ``dagster dev`` CLI process (leader of the group).
        port: Port of the webserver on 127.0.0.1.
        dagster_home: The temporary ``DAGSTER_HOME`` (holds the repo's ``dagster.yaml``).
        videoqa_home: The temporary ``VIDEOQA_HOME`` (embedded PostgreSQL, blobs).
        log_path: Combined stdout and stderr of the whole tree.
    """

    process: subprocess.Popen[bytes]
    port: int
    dagster_home: Path
    videoqa_home: Path
    log_path: Path
    lingering: list[str] = field(default_factory=list)
    _stopped: bool = False

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pgid(self) -> int:
        """The process group of the whole tree (equal to the CLI's pid: it leads a new session)."""
        return self.process.pid

    def log_tail(self, characters: int = 4000) -> str:
        """The end of the server log, to explain a failure."""
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except FileNotFoundError:
            return "(no log written)"

    def get(self, path: str, timeout: float = 10.0) -> bytes:
        """GET ``path`` from the webserver and return the body."""
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=timeout) as response:
            body: bytes = response.read()
            return body

    def graphql(
        self, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        """POST a GraphQL document and return its ``data``.

        Raises:
            DagsterDevError: the response carries GraphQL errors or no data.
        """
        payload = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(
            f"{self.base_url}/graphql", data=payload, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
        if answer.get("errors") or not answer.get("data"):
            raise DagsterDevError(
                f"GraphQL error for {query.split('(')[0].strip()!r}: {answer.get('errors')}"
            )
        data: dict[str, Any] = answer["data"]
        return data

    def group_processes(self) -> list[psutil.Process]:
        """Live (non-zombie) processes that still belong to the server's process group."""
        alive = []
        for process in psutil.process_iter(["pid", "status"]):
            try:
                if os.getpgid(process.pid) == self.pgid and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
            except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return alive

    def stop(self, grace_seconds: float = 20.0) -> list[str]:
        """End the whole process group: SIGTERM, then SIGKILL after ``grace_seconds``.

        Returns:
            Descriptions of processes of the group still alive afterwards (empty when clean).
        """
        if self._stopped:
            return self.lingering
        self._stopped = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            self.process.poll()  # reap the CLI itself so it does not stay a zombie of ours
            if not self.group_processes():
                break
            time.sleep(0.2)
        else:
            logger.warning(
                "dagster dev group %d outlived SIGTERM by %.0f s; sending SIGKILL", self.pgid, grace_seconds
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            settle = time.monotonic() + 5
            while self.group_processes() and time.monotonic() < settle:
                time.sleep(0.2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self.lingering = []
        for process in self.group_processes():
            with contextlib.suppress(psutil.Error):
                self.lingering.append(f"pid {process.pid}: {' '.join(process.cmdline())[:200]}")
        return self.lingering


#: Sections of the repo's dagster.yaml that pin storage under ./.videoqa for a DAGSTER_HOME-less
#: `dagster dev`; an instance with its own DAGSTER_HOME keeps everything there instead.
_LOCAL_STORAGE_SECTIONS = ("storage", "local_artifact_storage", "compute_logs")


def write_instance_yaml(dagster_home: Path) -> None:
    """The repo's dagster.yaml (run queue, limits, monitoring) for an instance kept in ``dagster_home``."""
    config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    for section in _LOCAL_STORAGE_SECTIONS:
        config.pop(section, None)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config))


def dagster_dev_environment(
    dagster_home: Path, videoqa_home: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a first-time user: this repo importable, every optional setting unset."""
    env = {key: value for key, value in os.environ.items() if key not in NON_DEFAULT_SETTINGS}
    env.update(
        {
            "DAGSTER_HOME": str(dagster_home),
            "VIDEOQA_HOME": str(videoqa_home),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def start_dagster_dev(
    dagster_home: Path,
    videoqa_home: Path,
    log_path: Path,
    *,
    port: int | None = None,
    startup_timeout: float = 180.0,
    extra_env: Mapping[str, str] | None = None,
) -> DagsterDev:
    """Run ``dagster dev -w workspace.yaml`` from the repo root and wait until it serves GraphQL.

    The repo's ``dagster.yaml`` is copied into ``dagster_home`` first, so the instance is the one
    a user gets (QueuedRunCoordinator, run and pool limits).

    Args:
        dagster_home: Empty directory to use as ``DAGSTER_HOME``.
        videoqa_home: Directory to use as ``VIDEOQA_HOME``.
        log_path: Where the server's output goes.
        port: Webserver port; a free one when None.
        startup_timeout: Seconds to wait for the code location to load.
        extra_env: Variables to add to the environment.

    Returns:
        The running server; call :meth:`DagsterDev.stop` when done.

    Raises:
        DagsterDevError: the process exited or did not become ready in time (the message
            includes the end of its log); the process group is stopped first.
    """
    dagster_home.mkdir(parents=True, exist_ok=True)
    videoqa_home.mkdir(parents=True, exist_ok=True)
    write_instance_yaml(dagster_home)
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(REPO_ROOT / "workspace.yaml"),
        "-h",
        LOOPBACK,
        "-p",
        str(port),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=dagster_dev_environment(dagster_home, videoqa_home, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DagsterDev(process, port, dagster_home, videoqa_home, log_path)
    try:
        _wait_until_ready(server, startup_timeout)
    except BaseException:
        server.stop(grace_seconds=5)
        raise
    return server


def _wait_until_ready(server: DagsterDev, timeout: float) -> None:
    """Wait for ``/server_info`` and then for the code location to be loaded."""
    deadline = time.monotonic() + timeout
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise DagsterDevError(
                f"dagster dev exited with code {server.process.returncode} during start-up; "
                f"log {server.log_path}:\n{server.log_tail()}"
            )
        try:
            info = json.loads(server.get("/server_info", timeout=5))
            try:
                entries = server.graphql(
                    "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
                )["workspaceOrError"]["locationEntries"]
            except DagsterDevError as error:  # the workspace is still being built
                last_problem = str(error)
                time.sleep(0.5)
                continue
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    raise DagsterDevError(f"the code location failed to load: {errors}")
                logger.info("dagster dev %s ready on port %d", info.get("dagster_version"), server.port)
                return
            last_problem = f"code locations not loaded yet: {entries}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as error:
            last_problem = str(error)
        time.sleep(0.5)
    raise DagsterDevError(
        f"dagster dev did not become ready within {timeout:.0f} s ({last_problem}); "
        f"log {server.log_path}:\n{server.log_tail()}"
    )

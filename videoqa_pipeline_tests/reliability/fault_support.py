"""Helpers of the fault and load tests: faults injected into real servers, and what a job left behind.

Every fault test follows the path a user sees: a job in the ledger, a Dagster run (in this
process, or launched by the daemon of a real ``dagster dev``), the job's terminal state and the
rows of every table for its video. The helpers here only inject faults and read the outcome; the
servers and runs themselves come from the other test packages' helpers.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote, urlencode

import psutil
import psycopg
import pytest
from psycopg import sql

from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.embedded import release_embedded_database
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline_tests.ai.openai_test_server import (
    OpenAITestServer,
    RecordedRequest,
    ScriptedReply,
)
from videoqa_pipeline_tests.pipeline.dagster_dev_server import DagsterDev
from videoqa_pipeline_tests.storage.conftest import _system_postgres_bin

#: Table name of each asset, in pipeline order.
TABLE_OF_ASSET = {asset: spec.name for asset, spec in TABLES.items()}


def rows_per_table(conn: psycopg.Connection, video_id: str) -> dict[str, int]:
    """How many rows each asset's table holds for ``video_id`` (asset name -> count)."""
    counts = {}
    for asset, table in TABLE_OF_ASSET.items():
        query = sql.SQL("SELECT count(*) FROM {} WHERE video_id = %s").format(sql.Identifier(table))
        row = conn.execute(query, (video_id,)).fetchone()
        counts[asset] = int(row[0]) if row else 0
    return counts


def as_url(conninfo: str) -> str:
    """A libpq ``key=value`` string as the ``postgresql://`` URL that ``DATABASE_URL`` requires."""
    if conninfo.startswith(("postgresql://", "postgres://")):
        return conninfo
    parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    user = quote(str(parts.pop("user", "postgres")))
    name = quote(str(parts.pop("dbname", "postgres")))
    return f"postgresql://{user}@/{name}?{urlencode({k: str(v) for k, v in parts.items()})}"


def database_rows(db: Database, video_id: str) -> dict[str, int]:
    """:func:`rows_per_table` through the pipeline's own pool."""
    with db.connection() as conn:
        return rows_per_table(conn, video_id)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> float:
    """Poll ``condition`` until true; return the seconds it took.

    Raises:
        TimeoutError: naming ``what`` when it did not happen within ``timeout`` seconds.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")


@dataclass
class SlowReply(ScriptedReply):
    """A scripted reply sent only after ``delay`` seconds: longer than the client's timeout, it is a hang."""

    delay: float = 0.0


class FaultyOpenAIServer(OpenAITestServer):
    """The project's OpenAI-compatible test server, plus replies that arrive late (timeouts).

    A client that gave up closes the socket before the late reply is written; that broken pipe is
    the expected end of a timed-out request and is not reported.
    """

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        path = handler.path.split("?")[0]
        with self._lock:
            queued = self.scripts[path]
            slow = queued.popleft() if queued and isinstance(queued[0], SlowReply) else None
            if slow is not None:
                headers = {k.lower(): v for k, v in handler.headers.items()}
                self.requests.append(RecordedRequest(path=path, headers=headers, at=time.monotonic()))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if slow is None:
                super()._handle(handler, body)
                return
            time.sleep(slow.delay)
            handler.send_response(slow.status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(slow.body)))
            handler.end_headers()
            handler.wfile.write(slow.body)


def run_workers(server: DagsterDev) -> list[psutil.Process]:
    """The run worker processes of a ``dagster dev``: one per launched run.

    The default run launcher asks the code server (``dagster api grpc``) to execute the run; it
    does so in a ``multiprocessing`` child, which is the process that runs the steps.
    """
    workers = []
    for process in server.group_processes():
        with contextlib.suppress(psutil.Error):
            command = " ".join(process.cmdline())
            parent = process.parent()
            if "spawn_main" in command and parent is not None and "api grpc" in " ".join(parent.cmdline()):
                workers.append(process)
    return workers


@dataclass
class RestartablePostgres:
    """A running system PostgreSQL cluster (from ``system_postgres_server``) that can be stopped and started.

    Attributes:
        url: Superuser URL of the cluster.
        data_dir: Its data directory.
        pg_ctl: The ``pg_ctl`` binary, with ``runuser -u postgres --`` in front when running as root.
    """

    url: str
    data_dir: Path
    pg_ctl: list[str]
    options: str = ""

    @classmethod
    def attach(cls, url: str) -> RestartablePostgres:
        """Find the data directory and binaries of the cluster serving ``url``."""
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        assert row is not None
        data_dir = Path(str(row[0]))
        bin_dir = _system_postgres_bin()
        assert bin_dir is not None
        prefix = [str(shutil.which("runuser")), "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return cls(url, data_dir, [*prefix, str(bin_dir / "pg_ctl")])

    def _options(self) -> str:
        """The server's command-line options (port, socket dir, settings) from ``postmaster.opts``."""
        words = shlex.split((self.data_dir / "postmaster.opts").read_text())[1:]
        kept = []
        skip = False
        for word in words:
            if skip:
                skip = False
            elif word == "-D":
                skip = True
            else:
                kept.append(word)
        return shlex.join(kept)

    def stop(self) -> None:
        """Fast shutdown: open connections are closed by the server, as in a real restart."""
        self.options = self._options()
        subprocess.run(
            [*self.pg_ctl, "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = self.options or self._options()
        log = self.data_dir.parent / "server.log"
        subprocess.run(
            [*self.pg_ctl, "-D", str(self.data_dir), "-l", str(log), "-o", options, "-w", "start"],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def restart_after(self, seconds_down: float) -> None:
        """Stop, stay down ``seconds_down`` seconds, start again."""
        self.stop()
        time.sleep(seconds_down)
        self.start()

    def is_up(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False


class RestartableMoto:
    """moto's S3/SQS server on a fixed loopback port that can go away and come back.

    The server runs in this process (``ThreadedMotoServer``); stopping it closes the port, so
    clients get "connection refused" exactly as from a dead endpoint. Buckets, objects and
    queues live in moto's in-process backends and survive a restart, as they would on a real
    S3/SQS endpoint that was unreachable for a while.
    """

    def __init__(self, port: int) -> None:
        from moto.server import ThreadedMotoServer

        self._factory = lambda: ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.endpoint = f"http://127.0.0.1:{port}"
        self._server = self._factory()
        self._server.start()
        self.up = True

    def stop(self) -> None:
        if self.up:
            self._server.stop()
            self.up = False

    def start(self) -> None:
        if not self.up:
            self._server = self._factory()
            self._server.start()
            self.up = True

    def outage(self, seconds: float) -> threading.Thread:
        """Stop now and start again after ``seconds`` in a background thread (join it afterwards)."""
        self.stop()

        def come_back() -> None:
            time.sleep(seconds)
            self.start()

        thread = threading.Thread(target=come_back, name="moto-outage", daemon=True)
        thread.start()
        return thread


@pytest.fixture()
def daemon_homes() -> Iterator[tuple[Path, Path]]:
    """``(DAGSTER_HOME, VIDEOQA_HOME)`` for one ``dagster dev``, removed afterwards (embedded server first)."""
    root = Path(tempfile.mkdtemp(prefix="videoqa-reliability-daemon-"))
    root.chmod(0o755)
    yield root / "dagster", root / "videoqa"
    release_embedded_database(root / "videoqa")
    shutil.rmtree(root, ignore_errors=True)

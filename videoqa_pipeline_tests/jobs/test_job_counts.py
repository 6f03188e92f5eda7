"""Job counts per status stay exact and cheap at any ledger size (migration 7).

``videoqa_job_counts`` is kept by statement triggers on ``videoqa_jobs``; these tests drive the
ledger through every kind of write (a producer's plain multi-row INSERT, the state machine's
UPDATEs, DELETE, TRUNCATE, a rolled-back transaction) and compare the counts with a real
``GROUP BY`` after each step, on both servers. The status paths are then run against a ledger of
20,000 jobs and must read only a bounded part of it.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from videoqa_pipeline.cli import main
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.migrations import (
    JOB_COUNT_SHARDS,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    MigrationContext,
)
from videoqa_pipeline.storage.schema import JOB_STATUSES
from videoqa_pipeline_tests.jobs.conftest import LedgerDatabase
from videoqa_pipeline_tests.query_plans import explain, recorded_statements
from videoqa_pipeline_tests.reliability.fault_support import as_url
from videoqa_pipeline_tests.storage.conftest import create_scratch_database


def _counted(database: Database) -> dict[str, int]:
    """The truth: the ledger counted row by row."""
    counts = dict.fromkeys(JOB_STATUSES, 0)
    with database.connection() as conn:
        for status, count in conn.execute("SELECT status, count(*) FROM videoqa_jobs GROUP BY status"):
            counts[status] = int(count)
    return counts


def _agrees(database: Database) -> dict[str, int]:
    kept = ledger.count_by_status(database)
    assert kept == _counted(database)
    return kept


def test_counts_follow_every_kind_of_write(ledger_db: LedgerDatabase, tiny_video: Path) -> None:
    database = ledger_db.database
    with database.connection() as conn:  # a producer's plain multi-row INSERT
        conn.execute(
            "INSERT INTO videoqa_jobs (source_uri) SELECT %s FROM generate_series(1, 5)", (str(tiny_video),)
        )
    assert _agrees(database)["pending"] == 5
    claimed = ledger.claim_pending_jobs(database, 3).queued
    assert _agrees(database)["queued"] == 3
    first, second, third = claimed
    assert ledger.mark_running(database, first.id, first.attempts, "run-1") == "running"
    assert ledger.mark_succeeded(database, first.id, first.attempts, "run-1", {"scenes": 1.0})
    ledger.mark_failed(
        database,
        second.id,
        second.attempts,
        "run-2",
        error="bad input",
        failed_step="scenes",
        transient=False,
        max_attempts=3,
    )
    ledger.cancel_job(database, third.id)
    assert _agrees(database) == {
        "pending": 2,
        "queued": 0,
        "running": 0,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 1,
    }
    ledger.requeue_job(database, second.id)
    ledger.link_run(database, first.id, first.attempts, "run-1")  # an UPDATE that moves no status
    assert _agrees(database)["pending"] == 3
    with pytest.raises(RuntimeError), database.connection() as conn, conn.transaction():
        conn.execute("INSERT INTO videoqa_jobs (source_uri) VALUES ('s3://b/rolled-back.mp4')")
        raise RuntimeError("the producer's transaction fails")
    with database.connection() as conn:
        conn.execute("DELETE FROM videoqa_jobs WHERE status = 'pending'")
    assert _agrees(database)["pending"] == 0
    with database.connection() as conn:
        conn.execute("TRUNCATE videoqa_jobs")
    assert _agrees(database) == dict.fromkeys(JOB_STATUSES, 0)


def test_the_migration_counts_an_existing_ledger(embedded_admin_url: str, jobs_home: Path) -> None:
    url = as_url(create_scratch_database(embedded_admin_url))
    with psycopg.connect(url) as conn, conn.transaction():  # a ledger as release 6 left it
        conn.execute(
            f"CREATE TABLE {MIGRATIONS_TABLE} (version integer PRIMARY KEY, description text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for migration in MIGRATIONS[:6]:
            migration.apply(conn, MigrationContext(has_pgvector=False))
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} VALUES (%s, %s)", (migration.version, "old"))
        conn.execute(
            """INSERT INTO videoqa_jobs (source_uri, status)
               SELECT 's3://b/' || g || '.mp4', (ARRAY['pending', 'succeeded', 'failed'])[1 + g % 3]
               FROM generate_series(1, 301) AS g"""
        )
    database = Database(DatabaseSettings(url=url, home=jobs_home, pool_size=2, timeout_seconds=10))
    try:
        assert 7 in database.ensure_schema()
        assert _agrees(database) == {
            "pending": 100,
            "queued": 0,
            "running": 0,
            "succeeded": 101,
            "failed": 100,
            "cancelled": 0,
        }
    finally:
        database.close()


def _connection_on_another_shard(url: str, taken: int) -> psycopg.Connection:
    """A connection whose backend adds to another counter row than the backend ``taken``'s."""
    opened: list[psycopg.Connection] = []
    try:
        for _ in range(200):
            conn = psycopg.connect(url)
            if conn.info.backend_pid % JOB_COUNT_SHARDS != taken % JOB_COUNT_SHARDS:
                return conn
            opened.append(conn)
        raise AssertionError("200 connections in a row landed on one shard")
    finally:
        for conn in opened:
            conn.close()


def test_concurrent_producers_do_not_wait_for_each_other(embedded_db: LedgerDatabase) -> None:
    """Two open transactions inserting pending jobs: the second is not blocked on a counter row
    the first one holds (with a single row per status it waited until the first committed)."""
    first = psycopg.connect(embedded_db.url)
    second = _connection_on_another_shard(embedded_db.url, first.info.backend_pid)
    try:
        first.execute("INSERT INTO videoqa_jobs (source_uri) VALUES ('s3://b/first.mp4')")
        second.execute("SET lock_timeout = '2s'")
        second.execute("INSERT INTO videoqa_jobs (source_uri) VALUES ('s3://b/second.mp4')")
        second.commit()
        first.commit()
    finally:
        first.close()
        second.close()
    assert _agrees(embedded_db.database)["pending"] == 2


def test_status_paths_read_a_bounded_part_of_a_large_ledger(embedded_db: LedgerDatabase) -> None:
    """``videoqa status`` (counts, the newest jobs, the newest failed ones) reads at most a few
    dozen of 20,000 rows; counting them with GROUP BY read all 20,000."""
    database = embedded_db.database
    with database.connection() as conn:
        conn.execute(
            """INSERT INTO videoqa_jobs (source_uri, status, finished_at)
               SELECT 's3://b/' || g || '.mp4', CASE WHEN g % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
                      now() - interval '3 days'
               FROM generate_series(1, 20000) AS g"""
        )
    with database.connection() as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE videoqa_jobs")
    with recorded_statements() as seen:
        counts = ledger.count_by_status(database)
        newest = ledger.list_jobs(database, limit=20)
        failed = ledger.list_jobs(database, limit=20, status="failed")
        deep = ledger.list_jobs(database, limit=20, before_id=101)
        deep_failed = ledger.list_jobs(database, limit=20, status="failed", before_id=1001)
    assert counts["succeeded"] == 19600 and counts["failed"] == 400
    assert len(newest) == 20 and len(failed) == 20 and {job.status for job in failed} == {"failed"}
    assert [job.id for job in deep] == list(range(100, 80, -1))
    assert [job.id for job in deep_failed] == list(range(1000, 0, -50))
    for statement in explain(database, seen):
        assert statement.rows_read.get("videoqa_jobs", 0) <= 40, statement


def test_status_pages_through_the_ledger_by_job_id(jobs_home: Path, embedded_db: LedgerDatabase) -> None:
    """``videoqa status`` says how to get the next page, and the pages together list every job once."""
    with embedded_db.database.connection() as conn:
        conn.execute(
            "INSERT INTO videoqa_jobs (source_uri) SELECT 's3://b/' || g || '.mp4' FROM generate_series(1, 45) g"
        )
    env = {"VIDEOQA_HOME": str(jobs_home), "DATABASE_URL": as_url(embedded_db.url), "DAGSTER_HOME": ""}
    seen: list[int] = []
    args = ["status", "--limit", "20"]
    for _ in range(5):
        result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[0].startswith("pending 45  queued 0") and lines[0].endswith("(exact counts)")
        seen += [int(line.split()[0]) for line in lines if line.split()[0].isdigit()]
        if not lines[-1].startswith("older jobs: "):
            break
        args = [*lines[-1].removeprefix("older jobs: videoqa ").split(), "--limit", "20"]
    assert seen == list(range(45, 0, -1))

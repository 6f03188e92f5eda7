"""``/stats`` and ``/jobs/peek`` read a bounded part of a large library, and say what they estimate.

The library here has 20,000 jobs (most finished days ago) and 30,000 videos; the exact-count
limit is lowered to 5,000 rows so the estimating branch runs on a table this size. Every statement
the two endpoints' functions run is replayed under EXPLAIN ANALYZE (the real SQL, recorded), and
none may read more than a few thousand rows of any table (before: ``GROUP BY status``, ``count(*)
FILTER`` and ``sum(size_bytes)`` each read every row).
"""

from __future__ import annotations

import pytest

from videoqa_pipeline.service import stats
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline_tests.query_plans import explain, recorded_statements

JOBS = 20_000
VIDEOS = 30_000


def _fill(database: Database) -> None:
    with database.connection() as conn:
        conn.execute(
            """INSERT INTO videoqa_jobs (source_uri, status, started_at, finished_at, step_seconds, created_at)
               SELECT 's3://b/' || g || '.mp4', CASE WHEN g > %(jobs)s - 50 THEN 'pending' ELSE 'succeeded' END,
                      now() - make_interval(days => CASE WHEN g > %(jobs)s - 80 THEN 0 ELSE 3 END, secs => 20),
                      CASE WHEN g <= %(jobs)s - 50
                           THEN now() - make_interval(days => CASE WHEN g > %(jobs)s - 80 THEN 0 ELSE 3 END) END,
                      '{"scenes": 1.5}'::jsonb, now() - make_interval(secs => %(jobs)s - g)
               FROM generate_series(1, %(jobs)s) AS g""",
            {"jobs": JOBS},
        )
        conn.execute(
            """INSERT INTO videoqa_videos (video_id, source_uri, blob_key, size_bytes)
               SELECT 'v' || g, 's3://b/' || g || '.mp4', 'v' || g || '/source/original.mp4', 1000 + g %% 1001
               FROM generate_series(1, %s) AS g""",
            (VIDEOS,),
        )
    with database.connection() as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE videoqa_jobs")
        conn.execute("VACUUM ANALYZE videoqa_videos")


def test_stats_and_peek_read_a_bounded_part_of_a_large_library(
    ledger_db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stats, "EXACT_COUNT_LIMIT", 5_000)
    monkeypatch.setattr(stats, "SAMPLE_ROWS", 2_000)
    _fill(ledger_db)
    with recorded_statements() as seen:
        body = stats.collect_stats(ledger_db, settings)
        peek = stats.peek_jobs(ledger_db, 10)
    jobs, storage, queue = body["jobs"], body["storage"], body["queue"]
    assert jobs["counts"]["succeeded"] == JOBS - 50 and jobs["processing_seconds"]["count"] == 30
    assert jobs["step_seconds"]["scenes"]["count"] == 30
    assert queue["pending"] == 50 and peek["counts"]["pending"] == 50
    assert [job["id"] for job in peek["pending"]] == list(range(JOBS - 49, JOBS - 39))
    # The oldest pending job was created 49 s before the newest one.
    assert queue["oldest_pending_seconds"] is not None and 49 <= queue["oldest_pending_seconds"] < 120
    assert storage["rows"]["videoqa_jobs"] == JOBS, "the ledger's rows come from its exact counts"
    assert storage["estimated_rows"] == ["videoqa_videos"] and storage["media_bytes_estimated"] is True
    assert abs(storage["videos"] - VIDEOS) < 0.05 * VIDEOS
    truth = sum(1000 + g % 1001 for g in range(1, VIDEOS + 1))
    assert abs(storage["media_bytes"] - truth) < 0.1 * truth
    for statement in explain(ledger_db, seen):
        assert max(statement.rows_read.values(), default=0) <= 6_000, statement


def test_small_libraries_are_counted_exactly(ledger_db: Database, settings: Settings) -> None:
    with ledger_db.connection() as conn:
        conn.execute(
            """INSERT INTO videoqa_videos (video_id, source_uri, blob_key, size_bytes)
               SELECT 'v' || g, 's3://b/' || g || '.mp4', 'k' || g, 7 FROM generate_series(1, 300) AS g"""
        )
    storage = stats.storage_stats(ledger_db)
    assert storage["videos"] == 300 and storage["media_bytes"] == 2100
    assert storage["estimated_rows"] == [] and storage["media_bytes_estimated"] is False

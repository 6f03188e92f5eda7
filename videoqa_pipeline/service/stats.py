"""What the operations endpoints report: the job queue, outcomes, timings and storage.

Plain functions over :class:`~videoqa_pipeline.storage.database.Database`, each one bounded,
so a library of a million videos answers as fast as one of a thousand:

* job counts per status are exact, read from the few rows of ``videoqa_job_counts`` that
  triggers keep (see :func:`videoqa_pipeline.storage.ledger.count_by_status`);
* percentiles are computed in PostgreSQL over a time window (``percentile_cont`` over jobs
  finished in the last ``window_hours``, served by the ``finished_at`` index);
* the age of the oldest pending job is one probe of the ``(status, id)`` index;
* rows and media bytes of a table are exact up to :data:`EXACT_COUNT_LIMIT` rows; above it,
  rows are the planner's estimate and bytes the table's sampled average size times those rows
  (``TABLESAMPLE`` of about :data:`SAMPLE_ROWS` rows), and the answer names what is estimated;
* the SQS depth is one ``GetQueueAttributes`` call with short timeouts.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.schema import JOB_STATUSES, JOBS_TABLE, TABLES

logger = logging.getLogger(__name__)

#: Above this many (estimated) rows a table's rows and bytes are estimated, not counted: an exact
#: ``count(*)`` and ``sum()`` read the whole table (about 0.1 s per million rows, on every request;
#: at 100,000 rows per table the exact branch alone made ``/stats`` take 60-130 ms).
EXACT_COUNT_LIMIT = 20_000

#: Rows read to estimate the average media size of a big table.
SAMPLE_ROWS = 20_000

#: Largest ``limit`` of ``/jobs/peek``.
MAX_PEEK = 100

_BYTE_COLUMNS = (
    ("videoqa_videos", "size_bytes"),
    ("videoqa_normalized_media", "video_size_bytes"),
    ("videoqa_normalized_media", "audio_size_bytes"),
    ("videoqa_keyframes", "size_bytes"),
)


#: How attempts used to be recorded, with the start of the receiver's answer; it is not shown.
_RECEIVER_ANSWER = re.compile(r"^POST \S+ answered HTTP (\d{3}):.*\Z", re.S)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def job_summary(job: ledger.Job) -> dict[str, Any]:
    """A job as JSON-ready values (timestamps ISO 8601)."""
    return {
        key: _iso(value) if isinstance(value, datetime) or key.endswith("_at") else value
        for key, value in vars(job).items()
    }


def callback_state(db: Database, job_id: int) -> dict[str, Any] | None:
    """The completion-callback bookkeeping of one job (None when the job does not exist)."""
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            f"""SELECT callback_state AS state, callback_attempts AS attempts,
                       callback_last_error AS last_error, callback_next_at AS next_at,
                       callback_delivered_at AS delivered_at
                FROM {JOBS_TABLE} WHERE id = %s""",
            (job_id,),
        ).fetchone()
    if row is None:
        return None
    state = {key: _iso(value) if isinstance(value, datetime) else value for key, value in row.items()}
    if state["last_error"]:
        state["last_error"] = _RECEIVER_ANSWER.sub(r"receiver answered HTTP \1", state["last_error"])
    return state


def peek_jobs(db: Database, limit: int) -> dict[str, Any]:
    """The next ``limit`` pending jobs (the order the job sensor claims them) and counts per status.

    Args:
        db: The ledger's database.
        limit: 1..:data:`MAX_PEEK`.

    Returns:
        ``{"pending": [...], "counts": {status: n}}``.
    """
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"""SELECT id, video_id, source_uri, source_kind, external_id, attempts, created_at
                FROM {JOBS_TABLE} WHERE status = 'pending' ORDER BY id LIMIT %s""",
            (limit,),
        ).fetchall()
    pending = [{**row, "id": int(row["id"]), "created_at": _iso(row["created_at"])} for row in rows]
    return {"pending": pending, "counts": ledger.count_by_status(db)}


def _percentiles(values: tuple[Any, ...]) -> dict[str, float | None]:
    p50, p95, count = values
    return {
        "count": int(count or 0),
        "p50": None if p50 is None else round(float(p50), 3),
        "p95": None if p95 is None else round(float(p95), 3),
    }


def job_stats(db: Database, window_hours: float) -> dict[str, Any]:
    """Outcomes (all time) and processing times (jobs finished within ``window_hours``)."""
    counts = ledger.count_by_status(db)
    succeeded, failed = counts["succeeded"], counts["failed"]
    processed = succeeded + failed
    with db.connection() as conn:
        overall = conn.execute(
            f"""SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds), count(*)
                FROM (SELECT extract(epoch FROM finished_at - started_at) AS seconds FROM {JOBS_TABLE}
                      WHERE status = 'succeeded' AND started_at IS NOT NULL
                        AND finished_at > now() - make_interval(secs => %s)) AS done""",
            (window_hours * 3600,),
        ).fetchone()
        per_step = conn.execute(
            f"""SELECT step.key,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY step.value::text::float8),
                       percentile_cont(0.95) WITHIN GROUP (ORDER BY step.value::text::float8), count(*)
                FROM {JOBS_TABLE}, jsonb_each(step_seconds) AS step
                WHERE status = 'succeeded' AND jsonb_typeof(step_seconds) = 'object'
                  AND jsonb_typeof(step.value) = 'number'
                  AND finished_at > now() - make_interval(secs => %s)
                GROUP BY step.key ORDER BY step.key""",
            (window_hours * 3600,),
        ).fetchall()
    return {
        "counts": counts,
        "processed": processed,
        "succeeded": succeeded,
        "failed": failed,
        "success_rate": None if processed == 0 else round(succeeded / processed, 4),
        "window_hours": window_hours,
        "processing_seconds": _percentiles(tuple(overall) if overall else (None, None, 0)),
        "step_seconds": {str(row[0]): _percentiles(tuple(row[1:])) for row in per_step},
    }


def _estimated_rows(conn: psycopg.Connection, table: str) -> int | None:
    """The planner's row estimate of ``table`` (None when it does not exist).

    The planner scales the last ANALYZE's rows per page by the table's current size, so the
    estimate follows bulk loads that no ANALYZE has seen yet.
    """
    found = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
    if found is None or found[0] is None:
        return None
    plan = conn.execute(
        sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}").format(sql.Identifier(table))
    ).fetchone()
    return int(plan[0][0]["Plan"]["Plan Rows"]) if plan else 0


def _column_total(conn: psycopg.Connection, table: str, column: str, rows: int, exact: bool) -> int:
    """``sum(column)`` of ``table``: exact, or its sampled average times ``rows``."""
    if exact:
        query = sql.SQL("SELECT COALESCE(sum({}), 0) FROM {}").format(
            sql.Identifier(column), sql.Identifier(table)
        )
        summed = conn.execute(query).fetchone()
        return int(summed[0]) if summed else 0
    percent = min(100.0, 100.0 * SAMPLE_ROWS / max(rows, 1))
    query = sql.SQL("SELECT avg({}) FROM {} TABLESAMPLE SYSTEM (%s)").format(
        sql.Identifier(column), sql.Identifier(table)
    )
    average = conn.execute(query, (percent,)).fetchone()
    return 0 if average is None or average[0] is None else round(float(average[0]) * rows)


def storage_stats(db: Database) -> dict[str, Any]:
    """Videos, media bytes and rows per pipeline table, exact up to :data:`EXACT_COUNT_LIMIT` rows.

    ``estimated_rows`` lists the tables whose row count is an estimate; ``media_bytes_estimated``
    says whether ``media_bytes`` is. The ledger's rows are always exact (its per-status counts).
    """
    tables = sorted({spec.name for spec in TABLES.values()})
    rows: dict[str, int] = {JOBS_TABLE: sum(ledger.count_by_status(db).values())}
    estimated: list[str] = []
    with db.connection() as conn:
        for table in tables:
            estimate = _estimated_rows(conn, table)
            if estimate is None:
                continue
            if estimate > EXACT_COUNT_LIMIT:
                rows[table] = estimate
                estimated.append(table)
            else:
                counted = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                ).fetchone()
                rows[table] = int(counted[0]) if counted else 0
        total_bytes = sum(
            _column_total(conn, table, column, rows[table], exact=table not in estimated)
            for table, column in _BYTE_COLUMNS
            if table in rows
        )
    return {
        "videos": rows.get("videoqa_videos", 0),
        "media_bytes": total_bytes,
        "media_bytes_estimated": any(table in estimated for table, _ in _BYTE_COLUMNS),
        "rows": dict(sorted(rows.items())),
        "estimated_rows": estimated,
    }


def queue_stats(db: Database) -> dict[str, Any]:
    """How much work waits: pending/queued/running counts (exact) and the age of the oldest
    pending job (the one the job sensor claims next: lowest ID, one index probe)."""
    counts = ledger.count_by_status(db)
    with db.connection() as conn:
        row = conn.execute(
            f"""SELECT extract(epoch FROM now() - created_at) FROM {JOBS_TABLE}
                WHERE status = 'pending' ORDER BY id LIMIT 1"""
        ).fetchone()
    oldest = None if row is None else row[0]
    return {
        "pending": counts["pending"],
        "queued": counts["queued"],
        "running": counts["running"],
        "oldest_pending_seconds": None if oldest is None else round(float(oldest), 1),
    }


def sqs_depth(settings: Settings) -> dict[str, Any]:
    """Approximate depth of ``AWS_SQS_QUEUE_URL`` (one API call, short timeouts, no retries).

    Returns:
        ``{"queue_url", "approximate_messages", "in_flight", "delayed"}``, or with ``"error"`` when
        the queue cannot be asked (the error names the queue and the cause).
    """
    from videoqa_pipeline import aws

    queue_url = settings.aws_sqs_queue_url or ""
    config = aws.AwsConfig(
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        max_attempts=1,
        connect_timeout=3.0,
        read_timeout=5.0,
    )
    try:
        attributes = aws.client("sqs", config).get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
    except Exception as error:  # any boto failure is reported in the stats, not raised
        return {"queue_url": queue_url, "error": f"GetQueueAttributes failed: {aws.describe_error(error)}"}
    return {
        "queue_url": queue_url,
        "approximate_messages": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    }


def collect_stats(db: Database, settings: Settings, *, window_hours: float = 24.0) -> dict[str, Any]:
    """Everything ``/stats`` shows: jobs, storage and queue (with SQS depth when SQS is a source)."""
    queue = queue_stats(db)
    if "sqs" in settings.job_sources and settings.aws_sqs_queue_url:
        queue["sqs"] = sqs_depth(settings)
    return {
        "jobs": job_stats(db, window_hours),
        "storage": storage_stats(db),
        "queue": queue,
        "statuses": list(JOB_STATUSES),
    }

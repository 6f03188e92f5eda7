"""Completion callbacks: tell a job's producer how it ended, signed, retried, never blocking runs.

When a job reaches ``succeeded``, ``failed`` or ``cancelled``, a signed JSON event is POSTed to
its ``callback_url`` (or ``WEBHOOK_URL`` when the job has none). Delivery is decoupled from the
run: the outcome is already in the ledger, and :func:`deliver_pending_callbacks` (called by the
``job_callback_sensor`` in Dagster and by the HTTP service's background loop) picks up outcomes
that still owe a callback. So a dead or slow receiver costs at most a bounded request timeout in
that loop, never a run, a step or a status write-back.

Bookkeeping lives on the job row (migration 3): ``callback_attempts``, ``callback_last_error``,
``callback_state`` (``retrying``, ``delivered``, ``gave_up``), ``callback_next_at`` (exponential
backoff with jitter), ``callback_outcome_at`` (the ``finished_at`` the state refers to, so a job
that is requeued and finishes again owes a fresh callback) and ``callback_delivered_at``.
Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease (``callback_next_at`` moved ahead
before sending), so several deliverers never send the same attempt at once. Delivery is at least
once: the ``webhook-id`` of an outcome is stable across retries, so receivers can deduplicate.

A callback URL is chosen by whoever submitted the job, so it is a way into the deployment's own
network: every POST goes through :func:`videoqa_pipeline.fetch.checked_post` under the source
policy (no loopback, private or link-local address unless
``VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES`` allows it; the address checked on the connection made,
since DNS may have changed since intake; no redirects followed), ``WEBHOOK_URL`` included. What a
receiver answers is never stored: ``callback_last_error`` is public (``GET /jobs/{id}``), so it
holds only "receiver answered HTTP 500", or why the request could not be made.

The event body follows the Standard Webhooks payload shape::

    {"type": "job.succeeded", "timestamp": "2025-01-01T12:00:00+00:00",
     "data": {"job_id": 42, "status": "succeeded", "video_id": "talk", ...}}
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from videoqa_pipeline.fetch import SourcePolicy, SourceUnavailableError, checked_post
from videoqa_pipeline.jsonsafe import JsonRefused, decode_json
from videoqa_pipeline.service.webhooks import sign_headers
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.schema import JOBS_TABLE

logger = logging.getLogger(__name__)

#: Give up on an outcome's callback after this many failed attempts.
DEFAULT_MAX_ATTEMPTS = 8
#: First retry delay; doubles per attempt (with jitter) up to :data:`MAX_BACKOFF_SECONDS`.
BASE_BACKOFF_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 3600.0
#: Seconds one POST may take (connect + response).
DEFAULT_TIMEOUT_SECONDS = 5.0
#: Outcomes older than this are not called back the first time (e.g. when WEBHOOK_URL is set on an
#: existing ledger: no flood of callbacks for history). Retries already scheduled are unaffected.
DEFAULT_MAX_AGE_SECONDS = 24 * 3600.0
#: A claimed callback is invisible to other deliverers for this long (longer than one POST).
CLAIM_LEASE_SECONDS = 60.0

USER_AGENT = "videoqa-pipeline-callbacks/1"


@dataclass(frozen=True)
class CallbackEvent:
    """One outcome owed to a receiver.

    Attributes:
        job_id: The job.
        url: Where to POST.
        webhook_id: Stable per outcome (same on every retry), for the receiver's deduplication.
        body: The exact JSON bytes to send.
        outcome_at: The job's ``finished_at`` this event reports.
        attempts_before: Attempts already made for this outcome.
    """

    job_id: int
    url: str
    webhook_id: str
    body: bytes
    outcome_at: datetime
    attempts_before: int


@dataclass
class DeliveryReport:
    """What one call of :func:`deliver_pending_callbacks` did.

    Attributes:
        delivered: Job IDs whose callback was acknowledged with a 2xx.
        retrying: Job IDs whose attempt failed and will be tried again later.
        gave_up: Job IDs whose callback failed for the last time.
        errors: ``job_id -> error text`` of the failed attempts.
    """

    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def attempted(self) -> int:
        return len(self.delivered) + len(self.retrying) + len(self.gave_up)


def backoff_seconds(failed_attempts: int, *, rng: random.Random | None = None) -> float:
    """Delay before the next attempt after ``failed_attempts`` failures: exponential, full jitter
    over the upper half (so retries of many jobs after an outage do not arrive in lockstep).

    Args:
        failed_attempts: Attempts that failed so far (>= 1).
        rng: Random source, for tests.

    Returns:
        Seconds, between half and all of ``min(BASE * 2**(n-1), MAX)``.
    """
    ceiling = min(BASE_BACKOFF_SECONDS * 2 ** max(0, failed_attempts - 1), MAX_BACKOFF_SECONDS)
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _step_seconds(raw: str | None) -> Any:
    """The row's ``step_seconds`` (read as text: a hand-written value Python cannot decode must not
    stop delivery), or None when it cannot be decoded."""
    if raw is None:
        return None
    try:
        return decode_json(raw, what="step_seconds")
    except JsonRefused:
        return None


def event_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON event for a finished job row (``type``, ``timestamp``, ``data``)."""
    return {
        "type": f"job.{row['status']}",
        "timestamp": _iso(row["finished_at"]),
        "data": {
            "job_id": int(row["id"]),
            "status": row["status"],
            "video_id": row["video_id"],
            "source_uri": row["source_uri"],
            "source_kind": row["source_kind"],
            "external_id": row["external_id"],
            "attempts": int(row["attempts"]),
            "run_id": row["run_id"],
            "error": row["error"],
            "failed_step": row["failed_step"],
            "step_seconds": _step_seconds(row["step_seconds"]),
            # What a succeeded job could not process (damaged media), one "step: text" line each.
            "warnings": row["warnings"],
            "created_at": _iso(row["created_at"]),
            "started_at": _iso(row["started_at"]),
            "finished_at": _iso(row["finished_at"]),
        },
    }


def outcome_webhook_id(job_id: int, finished_at: datetime) -> str:
    """The ``webhook-id`` of one outcome of a job: the same on every retry of it."""
    return f"job-{job_id}-{int(finished_at.timestamp() * 1_000_000)}"


def claim_callbacks(
    db: Database,
    *,
    default_url: str | None,
    limit: int,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    lease_seconds: float = CLAIM_LEASE_SECONDS,
) -> list[CallbackEvent]:
    """Lock and lease up to ``limit`` outcomes that owe a callback now.

    Args:
        db: The ledger's database.
        default_url: ``WEBHOOK_URL``, used for jobs without their own ``callback_url``.
        limit: Most events to claim.
        max_age_seconds: Ignore first deliveries of outcomes older than this.
        lease_seconds: How long the claimed rows stay invisible to other deliverers.

    Returns:
        The events to send, oldest outcome first.
    """
    if limit <= 0:
        return []
    events: list[CallbackEvent] = []
    with db.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"""
            SELECT id, video_id, source_uri, source_kind, external_id, status, attempts, run_id, error,
                   failed_step, step_seconds::text AS step_seconds, warnings, callback_url, created_at,
                   started_at, finished_at, callback_outcome_at, callback_attempts
            FROM {JOBS_TABLE}
            WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NOT NULL
              AND (callback_url IS NOT NULL OR %(has_default)s)
              AND ((callback_outcome_at IS DISTINCT FROM finished_at
                    AND finished_at > now() - make_interval(secs => %(max_age)s))
                   OR (callback_state = 'retrying' AND callback_outcome_at = finished_at
                       AND callback_next_at <= now()))
            ORDER BY finished_at
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
            """,
            {"has_default": default_url is not None, "max_age": max_age_seconds, "limit": limit},
        ).fetchall()
        for row in rows:
            fresh = row["callback_outcome_at"] != row["finished_at"]
            attempts_before = 0 if fresh else int(row["callback_attempts"])
            cursor.execute(
                f"""UPDATE {JOBS_TABLE}
                    SET callback_outcome_at = finished_at, callback_state = 'retrying',
                        callback_attempts = %s, callback_next_at = now() + make_interval(secs => %s),
                        callback_delivered_at = CASE WHEN %s THEN NULL ELSE callback_delivered_at END
                    WHERE id = %s""",
                (attempts_before, lease_seconds, fresh, row["id"]),
            )
            url = row["callback_url"] or default_url
            assert url is not None  # the WHERE clause guarantees one
            body = json.dumps(event_payload(row), separators=(",", ":"), default=str).encode()
            events.append(
                CallbackEvent(
                    job_id=int(row["id"]),
                    url=url,
                    webhook_id=outcome_webhook_id(int(row["id"]), row["finished_at"]),
                    body=body,
                    outcome_at=row["finished_at"],
                    attempts_before=attempts_before,
                )
            )
    return events


def send_event(
    event: CallbackEvent, secret: str | None, timeout_seconds: float, policy: SourcePolicy
) -> str | None:
    """POST one event; return None when the receiver answered 2xx, else the error text.

    Never raises for network or HTTP problems: they are the receiver's, and are recorded. The
    text never quotes the receiver's answer (it is shown publicly in ``GET /jobs/{id}``).
    """
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    if secret:
        headers.update(sign_headers(secret, event.webhook_id, event.body))
    else:
        headers.update({"webhook-id": event.webhook_id, "webhook-timestamp": str(int(time.time()))})
    try:
        status = checked_post(event.url, event.body, headers, policy=policy, timeout_seconds=timeout_seconds)
    except SourceUnavailableError as error:
        return str(error)[:1000]
    if 200 <= status < 300:
        return None
    return f"receiver answered HTTP {status}"


def _record(db: Database, event: CallbackEvent, error: str | None, max_attempts: int) -> str:
    attempts = event.attempts_before + 1
    if error is None:
        state, delay = "delivered", 0.0
    elif attempts >= max_attempts:
        state, delay = "gave_up", 0.0
    else:
        state, delay = "retrying", backoff_seconds(attempts)
    with db.connection() as conn:
        conn.execute(
            f"""UPDATE {JOBS_TABLE}
                SET callback_attempts = %s, callback_state = %s,
                    callback_last_error = COALESCE(%s, callback_last_error),
                    callback_next_at = CASE WHEN %s = 'retrying' THEN now() + make_interval(secs => %s) END,
                    callback_delivered_at = CASE WHEN %s = 'delivered' THEN now() ELSE callback_delivered_at END
                WHERE id = %s AND callback_outcome_at = %s""",
            (attempts, state, error, state, delay, state, event.job_id, event.outcome_at),
        )
    return state


def deliver_pending_callbacks(
    db: Database,
    *,
    secret: str | None,
    default_url: str | None = None,
    limit: int = 20,
    concurrency: int = 4,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
    policy: SourcePolicy | None = None,
) -> DeliveryReport:
    """Send the callbacks that are due now, in parallel, and record each attempt.

    Bounded: at most ``limit`` events, ``concurrency`` at a time, each within ``timeout_seconds``,
    so one call takes at most about ``ceil(limit / concurrency) * timeout_seconds``.

    Args:
        db: The ledger's database (migrated).
        secret: ``WEBHOOK_SECRET`` to sign with; None sends unsigned events (logged once per call).
        default_url: ``WEBHOOK_URL`` for jobs without a ``callback_url``.
        limit: Most events per call.
        concurrency: Parallel POSTs.
        timeout_seconds: Per POST.
        max_attempts: Attempts per outcome before giving up (``callback_state = 'gave_up'``).
        max_age_seconds: Outcomes older than this get no first delivery.
        policy: Where callbacks may be sent (default: the environment's settings, as for sources).

    Returns:
        Which jobs were delivered, will be retried, or were given up on, with the errors.

    Raises:
        DatabaseUnavailableError: the ledger cannot be reached (nothing was sent).
    """
    report = DeliveryReport()
    events = claim_callbacks(db, default_url=default_url, limit=limit, max_age_seconds=max_age_seconds)
    if not events:
        return report
    if not secret:
        logger.warning("WEBHOOK_SECRET is not set: %d completion callback(s) are sent unsigned", len(events))
    allowed = policy if policy is not None else SourcePolicy.from_env()
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(events)))) as pool:
        errors = list(pool.map(lambda event: send_event(event, secret, timeout_seconds, allowed), events))
    for event, error in zip(events, errors, strict=True):
        state = _record(db, event, error, max_attempts)
        if state == "delivered":
            report.delivered.append(event.job_id)
        elif state == "gave_up":
            report.gave_up.append(event.job_id)
            report.errors[event.job_id] = error or ""
            logger.warning(
                "gave up on the completion callback of job %d after %d attempts: %s",
                event.job_id,
                event.attempts_before + 1,
                error,
            )
        else:
            report.retrying.append(event.job_id)
            report.errors[event.job_id] = error or ""
            logger.info("completion callback of job %d failed, will retry: %s", event.job_id, error)
    return report

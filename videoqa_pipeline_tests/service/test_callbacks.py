"""Completion callbacks: signed, recorded, retried with backoff, never in the way of a job."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from videoqa_pipeline.fetch import SourcePolicy
from videoqa_pipeline.service import callbacks
from videoqa_pipeline.service.app import ServiceOptions, create_app
from videoqa_pipeline.service.webhooks import WebhookVerificationError, secret_key, sign_headers, verify
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.blobs import LocalBlobStore
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline_tests.service.conftest import SECRET, free_socket, serve, service_settings, unused_port

#: The receivers here listen on loopback, which the default policy refuses (see test_callback_ssrf).
LOOPBACK_ALLOWED = SourcePolicy(allow_private_network=True)


@dataclass
class Receiver:
    """A producer's endpoint: verifies every callback's signature with the shared secret."""

    events: list[dict[str, Any]] = field(default_factory=list)
    webhook_ids: list[str] = field(default_factory=list)
    refused: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            try:
                verified = verify(secret_key(SECRET), request.headers, body)
            except WebhookVerificationError as error:
                self.refused += 1
                return JSONResponse({"error": str(error)}, status_code=401)
            self.events.append(json.loads(body))
            self.webhook_ids.append(verified.webhook_id)
            self.arrived.set()
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/done", receive, methods=["POST"])])


def run_job_to_success(db: Database, job_id: int) -> None:
    """The write-back calls a run makes, in order."""
    claimed = ledger.claim_pending_jobs(db, 10).queued
    job = next(item for item in claimed if item.id == job_id)
    assert ledger.mark_running(db, job.id, job.attempts, "run-1") == "running"
    assert ledger.mark_succeeded(db, job.id, job.attempts, "run-1", {"scenes": 1.5})


def callback_row(db: Database, job_id: int) -> dict[str, Any]:
    with db.connection() as conn:
        row = conn.execute(
            """SELECT status, callback_state, callback_attempts, callback_last_error
               FROM videoqa_jobs WHERE id = %s""",
            (job_id,),
        ).fetchone()
    assert row is not None
    return dict(zip(("status", "state", "attempts", "last_error"), row, strict=True))


def make_due(db: Database) -> None:
    """Skip the backoff wait: the schedule itself is tested in test_backoff_grows_with_jitter."""
    with db.connection() as conn:
        conn.execute("UPDATE videoqa_jobs SET callback_next_at = now() WHERE callback_state = 'retrying'")


@pytest.fixture()
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()
    with serve(state.app()) as url:
        yield state, f"{url}/done"


def test_webhook_job_gets_a_signed_callback_from_the_service(
    ledger_db: Database, service_home: Path, receiver: tuple[Receiver, str]
) -> None:
    state, callback_url = receiver
    app = create_app(
        service_settings(service_home, VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES="true"),
        ServiceOptions(deliver_callbacks=True, callback_interval_seconds=0.1),
        database=ledger_db,
        blob_store=LocalBlobStore(service_home / "blobs"),
    )
    body = json.dumps({"source_uri": "s3://bucket/cb.mp4", "callback_url": callback_url}).encode()
    with serve(app) as url:
        accepted = httpx.post(
            f"{url}/webhook/jobs", content=body, headers=sign_headers(SECRET, "evt-cb", body)
        )
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        run_job_to_success(ledger_db, job_id)
        assert state.arrived.wait(20), "no callback arrived"
        detail = httpx.get(f"{url}/jobs/{job_id}").json()
    assert state.refused == 0
    [event] = state.events
    assert event["type"] == "job.succeeded"
    assert event["data"]["job_id"] == job_id and event["data"]["external_id"] == "evt-cb"
    assert event["data"]["step_seconds"] == {"scenes": 1.5}
    assert state.webhook_ids[0].startswith(f"job-{job_id}-")
    assert detail["callback"]["state"] == "delivered" and detail["callback"]["attempts"] == 1


def test_a_dead_receiver_gets_retries_and_the_job_stays_succeeded(ledger_db: Database) -> None:
    sock = free_socket()  # reserved now, listened on only later: until then connections are refused
    port = sock.getsockname()[1]
    job_id = ledger.submit_job(
        ledger_db,
        ledger.JobRequest(source_uri="s3://bucket/a.mp4", callback_url=f"http://127.0.0.1:{port}/done"),
    ).job_id
    run_job_to_success(ledger_db, job_id)

    started = time.monotonic()
    report = callbacks.deliver_pending_callbacks(
        ledger_db, secret=SECRET, timeout_seconds=2, policy=LOOPBACK_ALLOWED
    )
    assert time.monotonic() - started < 10  # refused at once, not hung
    assert report.retrying == [job_id]
    row = callback_row(ledger_db, job_id)
    assert row["status"] == "succeeded" and row["state"] == "retrying" and row["attempts"] == 1
    assert "Connection refused" in row["last_error"]
    # Not due yet: backoff holds it back.
    assert (
        callbacks.deliver_pending_callbacks(ledger_db, secret=SECRET, policy=LOOPBACK_ALLOWED).attempted == 0
    )

    state = Receiver()
    with serve(state.app(), sock):
        make_due(ledger_db)
        report = callbacks.deliver_pending_callbacks(ledger_db, secret=SECRET, policy=LOOPBACK_ALLOWED)
    assert report.delivered == [job_id]
    assert [event["data"]["status"] for event in state.events] == ["succeeded"]
    row = callback_row(ledger_db, job_id)
    assert (row["status"], row["state"], row["attempts"]) == ("succeeded", "delivered", 2)
    assert "Connection refused" in row["last_error"]  # the history of the failed attempt is kept
    assert (
        callbacks.deliver_pending_callbacks(ledger_db, secret=SECRET, policy=LOOPBACK_ALLOWED).attempted == 0
    )  # once only


def test_gives_up_after_max_attempts_and_uses_webhook_url_by_default(ledger_db: Database) -> None:
    job_id = ledger.submit_job(ledger_db, ledger.JobRequest(source_uri="s3://bucket/b.mp4")).job_id
    ledger.cancel_job(ledger_db, job_id)
    dead = f"http://127.0.0.1:{unused_port()}/done"
    assert (
        callbacks.deliver_pending_callbacks(ledger_db, secret=SECRET, policy=LOOPBACK_ALLOWED).attempted == 0
    )  # no URL at all
    for attempt in (1, 2):
        report = callbacks.deliver_pending_callbacks(
            ledger_db, secret=SECRET, default_url=dead, max_attempts=2, policy=LOOPBACK_ALLOWED
        )
        assert report.attempted == 1, attempt
        make_due(ledger_db)
    assert report.gave_up == [job_id]
    row = callback_row(ledger_db, job_id)
    assert (row["status"], row["state"], row["attempts"]) == ("cancelled", "gave_up", 2)
    assert (
        callbacks.deliver_pending_callbacks(
            ledger_db, secret=SECRET, default_url=dead, policy=LOOPBACK_ALLOWED
        ).attempted
        == 0
    )


def test_a_requeued_job_that_finishes_again_owes_a_new_callback(
    ledger_db: Database, receiver: tuple[Receiver, str]
) -> None:
    state, callback_url = receiver
    job_id = ledger.submit_job(
        ledger_db, ledger.JobRequest(source_uri="s3://bucket/c.mp4", callback_url=callback_url)
    ).job_id
    ledger.cancel_job(ledger_db, job_id)
    assert callbacks.deliver_pending_callbacks(
        ledger_db, secret=SECRET, policy=LOOPBACK_ALLOWED
    ).delivered == [job_id]
    ledger.requeue_job(ledger_db, job_id)
    run_job_to_success(ledger_db, job_id)
    assert callbacks.deliver_pending_callbacks(
        ledger_db, secret=SECRET, policy=LOOPBACK_ALLOWED
    ).delivered == [job_id]
    assert [event["type"] for event in state.events] == ["job.cancelled", "job.succeeded"]
    assert len(set(state.webhook_ids)) == 2


def test_a_hand_written_step_seconds_python_cannot_decode_does_not_stop_delivery(
    ledger_db: Database, receiver: tuple[Receiver, str]
) -> None:
    state, callback_url = receiver
    job_id = ledger.submit_job(
        ledger_db, ledger.JobRequest(source_uri="s3://bucket/poison.mp4", callback_url=callback_url)
    ).job_id
    ledger.cancel_job(ledger_db, job_id)
    nested = "[" * 5000 + "]" * 5000  # valid jsonb, too deep for Python's decoder
    with ledger_db.connection() as conn:
        conn.execute("UPDATE videoqa_jobs SET step_seconds = %s::jsonb WHERE id = %s", (nested, job_id))
    report = callbacks.deliver_pending_callbacks(ledger_db, secret=SECRET, policy=LOOPBACK_ALLOWED)
    assert report.delivered == [job_id], report
    assert state.events[-1]["data"]["step_seconds"] is None


def test_a_job_that_succeeded_with_warnings_says_so_in_its_callback(
    ledger_db: Database, receiver: tuple[Receiver, str]
) -> None:
    state, callback_url = receiver
    job_id = ledger.submit_job(
        ledger_db, ledger.JobRequest(source_uri="s3://bucket/damaged.mp4", callback_url=callback_url)
    ).job_id
    claimed = ledger.claim_pending_jobs(ledger_db, 10).queued
    job = next(item for item in claimed if item.id == job_id)
    assert ledger.mark_running(ledger_db, job.id, job.attempts, "run-w") == "running"
    assert ledger.add_job_warning(ledger_db, job.id, job.attempts, "run-w", "normalized_video", "audio gap")
    assert ledger.mark_succeeded(ledger_db, job.id, job.attempts, "run-w", {})
    report = callbacks.deliver_pending_callbacks(ledger_db, secret=SECRET, policy=LOOPBACK_ALLOWED)
    assert report.delivered == [job_id], report
    event = state.events[-1]
    assert event["type"] == "job.succeeded"
    assert event["data"]["warnings"] == "normalized_video: audio gap"


def test_backoff_grows_with_jitter() -> None:
    import random

    rng = random.Random(7)
    delays = [callbacks.backoff_seconds(attempt, rng=rng) for attempt in range(1, 12)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(callbacks.BASE_BACKOFF_SECONDS * 2 ** (attempt - 1), callbacks.MAX_BACKOFF_SECONDS)
        assert ceiling / 2 <= delay <= ceiling
    assert delays[-1] > delays[0] * 50

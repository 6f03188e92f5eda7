"""The operations endpoints on a real uvicorn against a real ledger."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from videoqa_pipeline.service.app import ServiceOptions, create_app
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.blobs import LocalBlobStore
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline_tests.service.conftest import serve, unused_port


@pytest.fixture()
def base_url(settings: Settings, ledger_db: Database, service_home: Path) -> Iterator[str]:
    app = create_app(
        settings,
        ServiceOptions(routes=("operations",)),
        database=ledger_db,
        blob_store=LocalBlobStore(service_home / "blobs"),
    )
    with serve(app) as url:
        yield url


def submit(db: Database, name: str) -> int:
    return ledger.submit_job(
        db, ledger.JobRequest(source_uri=f"s3://bucket/{name}.mp4", source_kind="api")
    ).job_id


def finish(db: Database, steps: dict[str, float], *, fail: bool = False) -> int:
    """Drive one pending job through the same write-back calls a run makes."""
    claimed = ledger.claim_pending_jobs(db, 1).queued[0]
    run_id = f"run-{claimed.id}"
    assert ledger.mark_running(db, claimed.id, claimed.attempts, run_id) == "running"
    if fail:
        ledger.mark_failed(
            db,
            claimed.id,
            claimed.attempts,
            run_id,
            error="boom",
            failed_step="scenes",
            transient=False,
            max_attempts=1,
        )
    else:
        assert ledger.mark_succeeded(db, claimed.id, claimed.attempts, run_id, steps)
    return claimed.id


def test_liveness_and_readiness(base_url: str) -> None:
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}
    for path in ("/readyz", "/healthz?ready=1"):
        response = httpx.get(f"{base_url}{path}", timeout=20)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ready" and body["failing"] == []
        assert set(body["checks"]) == {"database", "blob_store", "dagster"}
        assert "SELECT 1" in body["checks"]["database"]["detail"]
        assert "wrote and deleted" in body["checks"]["blob_store"]["detail"]


def test_readiness_names_the_failing_part(settings: Settings, service_home: Path, tmp_path: Path) -> None:
    dead = Database(
        DatabaseSettings(
            url=f"postgresql://nobody@127.0.0.1:{unused_port()}/none", home=service_home, timeout_seconds=1
        )
    )
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the blob root should be")
    app = create_app(
        settings, ServiceOptions(routes=("operations",)), database=dead, blob_store=LocalBlobStore(blocker)
    )
    with serve(app) as url:
        response = httpx.get(f"{url}/readyz", timeout=30)
        assert httpx.get(f"{url}/healthz").status_code == 200  # alive, just not ready
        stats = httpx.get(f"{url}/stats", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready" and sorted(body["failing"]) == ["blob_store", "database"]
    assert body["checks"]["dagster"]["ok"] is True  # DAGSTER_HOME unset: not configured, not failing
    assert stats.status_code == 503 and stats.json()["error"] == "database_unavailable"


def test_peek_lists_pending_jobs_in_claim_order_with_counts(base_url: str, ledger_db: Database) -> None:
    ids = [submit(ledger_db, f"v{index}") for index in range(4)]
    finish(ledger_db, {"scenes": 1.0})  # the oldest is claimed and done
    body = httpx.get(f"{base_url}/jobs/peek", params={"limit": 2}).json()
    assert [job["id"] for job in body["pending"]] == ids[1:3]
    assert body["counts"]["pending"] == 3 and body["counts"]["succeeded"] == 1
    assert httpx.get(f"{base_url}/jobs/peek", params={"limit": 0}).status_code == 400
    assert httpx.get(f"{base_url}/jobs/peek", params={"limit": "many"}).status_code == 400


def test_job_detail_and_not_found(base_url: str, ledger_db: Database) -> None:
    job_id = submit(ledger_db, "detail")
    body = httpx.get(f"{base_url}/jobs/{job_id}").json()
    assert body["id"] == job_id and body["source_uri"] == "s3://bucket/detail.mp4"
    assert body["callback"]["attempts"] == 0
    assert httpx.get(f"{base_url}/jobs/{job_id + 1000}").status_code == 404
    assert httpx.get(f"{base_url}/jobs/abc").status_code == 400


def test_stats_report_outcomes_percentiles_and_storage(base_url: str, ledger_db: Database) -> None:
    for index in range(5):
        submit(ledger_db, f"s{index}")
    for seconds in (1.0, 2.0, 3.0, 4.0):
        finish(ledger_db, {"scenes": seconds, "transcript": 10 * seconds})
    finish(ledger_db, {}, fail=True)
    with ledger_db.connection() as conn:
        conn.execute(
            """INSERT INTO videoqa_videos (video_id, source_uri, blob_key, size_bytes)
               VALUES ('a', 's3://b/a.mp4', 'a/source/original.mp4', 1000),
                      ('b', 's3://b/b.mp4', 'b/source/original.mp4', 500)"""
        )
    body = httpx.get(f"{base_url}/stats", timeout=20).json()
    jobs = body["jobs"]
    assert (jobs["processed"], jobs["succeeded"], jobs["failed"]) == (5, 4, 1)
    assert jobs["success_rate"] == 0.8
    assert jobs["processing_seconds"]["count"] == 4
    assert jobs["step_seconds"]["scenes"] == {"count": 4, "p50": 2.5, "p95": 3.85}
    assert jobs["step_seconds"]["transcript"]["p50"] == 25.0
    assert body["storage"]["videos"] == 2 and body["storage"]["media_bytes"] == 1500
    assert body["storage"]["rows"]["videoqa_jobs"] == 5
    assert body["queue"]["pending"] == 0 and "sqs" not in body["queue"]
    assert httpx.get(f"{base_url}/stats", params={"window_hours": "-1"}).status_code == 400


def test_metrics_are_prometheus_text(base_url: str, ledger_db: Database) -> None:
    submit(ledger_db, "m")
    httpx.get(f"{base_url}/healthz")
    response = httpx.get(f"{base_url}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'videoqa_jobs{status="pending"} 1.0' in text
    assert "videoqa_ledger_up 1.0" in text
    assert 'videoqa_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert "videoqa_http_request_duration_seconds_bucket" in text


def test_openapi_document_lists_the_served_routes(base_url: str) -> None:
    document = httpx.get(f"{base_url}/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert {"/healthz", "/readyz", "/jobs/peek", "/jobs/{job_id}", "/stats", "/metrics"} <= set(
        document["paths"]
    )
    assert "/webhook/jobs" not in document["paths"]  # operations-only app

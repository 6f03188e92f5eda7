"""POST /webhook/jobs on a real uvicorn: what is accepted, what is refused, and what the ledger holds."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from videoqa_pipeline.service.app import ServiceConfigError, ServiceOptions, create_app
from videoqa_pipeline.service.webhooks import sign_headers
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.blobs import LocalBlobStore
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline_tests.service.conftest import SECRET, serve

MESSAGE = {
    "source_uri": "s3://bucket/uploads/talk.mp4",
    "video_id": "talk",
    "options": {"max_frames_per_video": 5},
}


def job_rows(db: Database) -> list[tuple[str, str | None, str]]:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT source_kind, external_id, status FROM videoqa_jobs ORDER BY id"
        ).fetchall()
    return [(str(kind), external, str(status)) for kind, external, status in rows]


@pytest.fixture()
def base_url(settings: Settings, ledger_db: Database, service_home: Path) -> Iterator[str]:
    app = create_app(
        settings,
        ServiceOptions(max_body_bytes=4096),
        database=ledger_db,
        blob_store=LocalBlobStore(service_home / "blobs"),
    )
    with serve(app) as url:
        yield url


def post(
    base_url: str,
    body: bytes,
    *,
    secret: str = SECRET,
    webhook_id: str | None = None,
    **header_changes: str | None,
) -> httpx.Response:
    headers = sign_headers(secret, webhook_id or f"msg_{uuid.uuid4().hex}", body)
    headers["content-type"] = "application/json"
    for name, value in header_changes.items():
        header = name.replace("_", "-")
        if value is None:
            headers.pop(header, None)
        else:
            headers[header] = value
    return httpx.post(f"{base_url}/webhook/jobs", content=body, headers=headers, timeout=10)


def test_a_signed_job_is_in_the_ledger_before_the_202(base_url: str, ledger_db: Database) -> None:
    response = post(base_url, json.dumps(MESSAGE).encode(), webhook_id="evt-1")
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["video_id"] == "talk" and answer["duplicate"] is False
    job = ledger.get_job(ledger_db, answer["job_id"])
    assert (job.source_kind, job.external_id, job.status) == ("webhook", "evt-1", "pending")
    assert job.source_uri == MESSAGE["source_uri"] and job.options == {"max_frames_per_video": 5}
    detail = httpx.get(f"{base_url}{answer['status_url']}", timeout=10).json()
    assert detail["id"] == answer["job_id"] and detail["status"] == "pending"


def test_the_same_webhook_id_twice_is_one_job(base_url: str, ledger_db: Database) -> None:
    body = json.dumps(MESSAGE).encode()
    first = post(base_url, body, webhook_id="evt-dup")
    again = post(base_url, body, webhook_id="evt-dup")  # a sender's retry: freshly signed, same ID
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["job_id"] == first.json()["job_id"] and again.json()["duplicate"] is True
    assert job_rows(ledger_db) == [("webhook", "evt-dup", "pending")]


def _stale() -> dict[str, str]:
    body = json.dumps(MESSAGE).encode()
    return sign_headers(SECRET, "evt-stale", body, timestamp=int(time.time()) - 600)


CASES: dict[str, tuple[Callable[[str], httpx.Response], int, str]] = {
    "wrong secret": (
        lambda url: post(url, json.dumps(MESSAGE).encode(), secret="not-the-secret"),
        401,
        "bad_signature",
    ),
    "stale timestamp": (
        lambda url: httpx.post(f"{url}/webhook/jobs", content=json.dumps(MESSAGE).encode(), headers=_stale()),
        401,
        "stale_timestamp",
    ),
    "tampered body": (
        lambda url: httpx.post(
            f"{url}/webhook/jobs",
            content=json.dumps({**MESSAGE, "video_id": "evil"}).encode(),
            headers=sign_headers(SECRET, "evt-t", json.dumps(MESSAGE).encode()),
        ),
        401,
        "bad_signature",
    ),
    "missing signature": (lambda url: post(url, b"{}", webhook_signature=None), 401, "missing_headers"),
    "missing everything": (
        lambda url: httpx.post(f"{url}/webhook/jobs", content=json.dumps(MESSAGE).encode()),
        401,
        "missing_headers",
    ),
    "oversized body": (
        lambda url: post(url, json.dumps({**MESSAGE, "options": {"pad": "x" * 5000}}).encode()),
        413,
        "body_too_large",
    ),
    "invalid json": (lambda url: post(url, b'{"source_uri": '), 400, "invalid_json"),
    "not utf-8": (lambda url: post(url, b'{"source_uri": "\xff"}'), 400, "invalid_json"),
    "not an object": (lambda url: post(url, b'["s3://bucket/a.mp4"]'), 422, "invalid_job"),
    "no source": (lambda url: post(url, b'{"video_id": "x"}'), 422, "invalid_job"),
    "wrong type": (
        lambda url: post(url, json.dumps({**MESSAGE, "video_id": 42}).encode()),
        422,
        "invalid_job",
    ),
    "unknown field": (
        lambda url: post(url, json.dumps({**MESSAGE, "priority": 1}).encode()),
        422,
        "invalid_job",
    ),
    "bad option": (
        lambda url: post(url, json.dumps({**MESSAGE, "options": {"max_frames_per_video": 0}}).encode()),
        422,
        "invalid_job",
    ),
    "bad callback": (
        lambda url: post(url, json.dumps({**MESSAGE, "callback_url": "ftp://x"}).encode()),
        422,
        "invalid_job",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_requests_answer_4xx_with_a_reason_and_write_nothing(
    case: str, base_url: str, ledger_db: Database
) -> None:
    send, status, error = CASES[case]
    response = send(base_url)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"] == error and len(answer["detail"]) > 20
    assert SECRET not in response.text
    assert job_rows(ledger_db) == []


def test_refusals_are_counted_in_metrics(base_url: str) -> None:
    post(base_url, json.dumps(MESSAGE).encode(), secret="wrong")
    post(base_url, json.dumps(MESSAGE).encode())
    metrics = httpx.get(f"{base_url}/metrics", timeout=10).text
    assert 'videoqa_webhooks_total{outcome="bad_signature"} 1.0' in metrics
    assert 'videoqa_webhooks_total{outcome="accepted"} 1.0' in metrics
    assert 'videoqa_jobs{status="pending"} 1.0' in metrics


def test_without_a_secret_the_endpoint_refuses_to_start_unless_insecure_dev(
    service_home: Path, ledger_db: Database
) -> None:
    from videoqa_pipeline_tests.service.conftest import service_settings

    unsigned = service_settings(service_home, WEBHOOK_SECRET="")
    with pytest.raises(ServiceConfigError, match="WEBHOOK_SECRET"):
        create_app(unsigned, database=ledger_db)
    # Operations alone need no secret.
    create_app(unsigned, ServiceOptions(routes=("operations",)), database=ledger_db)
    app = create_app(unsigned, ServiceOptions(insecure_dev=True), database=ledger_db)
    with serve(app) as url:
        response = httpx.post(
            f"{url}/webhook/jobs", json=MESSAGE, headers={"webhook-id": "dev-1"}, timeout=10
        )
    assert response.status_code == 202, response.text
    assert job_rows(ledger_db) == [("webhook", "dev-1", "pending")]

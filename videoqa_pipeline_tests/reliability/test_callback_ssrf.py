"""Completion callbacks cannot be aimed at internal services (server-side request forgery).

A callback URL comes from whoever submitted the job, so it follows the same rule as a source: no
loopback, private or link-local address unless ``VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES`` allows
it. The rule is applied when the job is taken in (webhook, ``videoqa submit``, a ledger row when
it is claimed) and again when the callback is delivered, on the address actually connected to
(DNS may have changed, and a name may hide an address). ``WEBHOOK_URL`` is checked the same way.
What a receiver answers is never shown in ``GET /jobs/{id}``: only its status code.
"""

# ruff: noqa: F811 - fixtures imported from other test packages are redefined as parameters

from __future__ import annotations

import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from videoqa_pipeline.cli import main as cli_main
from videoqa_pipeline.fetch import SourcePolicy
from videoqa_pipeline.service import callbacks
from videoqa_pipeline.service.app import ServiceOptions, create_app
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.blobs import LocalBlobStore
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.schema import JOBS_TABLE
from videoqa_pipeline_tests.reliability.fault_support import as_url
from videoqa_pipeline_tests.service.conftest import (  # noqa: F401 - fixtures
    SECRET,
    admin_url,
    ledger_db,
    serve,
    service_home,
    service_settings,
)
from videoqa_pipeline_tests.service.test_intake import post

INTERNAL_BODY = "INTERNAL-ADMIN-PANEL-4f9a1c: users=alice,bob; token=abc123"


@dataclass
class InternalService:
    """An HTTP server on loopback standing for an internal service (an admin API, a metadata
    endpoint): records every request and answers 500 with a body nobody outside may read."""

    url: str = ""
    hits: list[str] = field(default_factory=list)
    status: int = 500
    location: str | None = None

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                state.hits.append(self.path)
                body = INTERNAL_BODY.encode()
                self.send_response(state.status)
                if state.location:
                    self.send_header("Location", state.location)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture()
def internal() -> Iterator[InternalService]:
    state = InternalService()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def job_count(db: Database) -> int:
    with db.connection() as conn:
        row = conn.execute(f"SELECT count(*) FROM {JOBS_TABLE}").fetchone()
    return int(row[0]) if row else 0


def finished_job(db: Database, callback_url: str | None) -> int:
    """A job that reached its end (cancelled), owing a callback to ``callback_url``."""
    job_id = ledger.submit_job(
        db, ledger.JobRequest(source_uri="s3://bucket/a.mp4", callback_url=callback_url)
    ).job_id
    ledger.cancel_job(db, job_id)
    return job_id


def callback_error(db: Database, job_id: int) -> str:
    with db.connection() as conn:
        row = conn.execute(
            f"SELECT callback_last_error FROM {JOBS_TABLE} WHERE id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return str(row[0])


INTERNAL_TARGETS = [
    "{internal}/admin",
    "http://localhost:{port}/admin",
    "http://[::1]:{port}/admin",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://10.0.0.7/hooks",
    "https://[::ffff:192.168.1.1]/hooks",
    "http://0.0.0.0:{port}/admin",
]


def _target(template: str, internal: InternalService) -> str:
    port = internal.url.rsplit(":", 1)[1]
    return template.format(internal=internal.url, port=port)


@pytest.fixture()
def service_url(ledger_db: Database, service_home: Path) -> Iterator[str]:
    app = create_app(
        service_settings(service_home),
        ServiceOptions(),
        database=ledger_db,
        blob_store=LocalBlobStore(service_home / "blobs"),
    )
    with serve(app) as url:
        yield url


@pytest.mark.parametrize("template", INTERNAL_TARGETS)
def test_a_webhook_naming_an_internal_callback_is_refused(
    template: str, internal: InternalService, service_url: str, ledger_db: Database
) -> None:
    target = _target(template, internal)
    body = json.dumps({"source_uri": "s3://bucket/a.mp4", "callback_url": target}).encode()
    answer = post(service_url, body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert "callback_url" in detail and "internal address" in detail, detail
    assert "VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES" in detail
    assert job_count(ledger_db) == 0 and internal.hits == []


def test_videoqa_submit_refuses_an_internal_callback(
    internal: InternalService, ledger_db: Database, service_home: Path
) -> None:
    env = {"DATABASE_URL": as_url(ledger_db.settings.url or ""), "VIDEOQA_HOME": str(service_home)}
    result = CliRunner().invoke(
        cli_main, ["submit", "s3://bucket/a.mp4", "--callback-url", f"{internal.url}/admin"], env=env
    )
    assert result.exit_code != 0 and "internal address" in result.output, result.output
    assert job_count(ledger_db) == 0


def test_a_ledger_row_naming_an_internal_callback_fails_when_claimed(ledger_db: Database) -> None:
    with ledger_db.connection() as conn:
        conn.execute(
            f"INSERT INTO {JOBS_TABLE} (source_uri, callback_url) VALUES (%s, %s)",
            ("s3://bucket/a.mp4", "http://169.254.169.254/latest/meta-data/"),
        )
    claim = ledger.claim_pending_jobs(ledger_db, 10, policy=SourcePolicy())
    assert claim.queued == []
    [rejected] = claim.rejected
    assert rejected.status == "failed" and "callback_url" in (rejected.error or ""), rejected.error
    assert "internal address" in (rejected.error or "")


def test_delivery_checks_the_address_it_connects_to(internal: InternalService, ledger_db: Database) -> None:
    """``2130706433`` is 127.0.0.1 written as one number: no name check sees it, the connection does."""
    port = internal.url.rsplit(":", 1)[1]
    job_id = finished_job(ledger_db, f"http://2130706433:{port}/admin")
    report = callbacks.deliver_pending_callbacks(ledger_db, secret=SECRET)
    assert report.retrying == [job_id]
    assert internal.hits == []
    error = callback_error(ledger_db, job_id)
    assert "internal address 127.0.0.1" in error, error


def test_webhook_url_is_checked_too(internal: InternalService, ledger_db: Database) -> None:
    job_id = finished_job(ledger_db, None)
    report = callbacks.deliver_pending_callbacks(
        ledger_db, secret=SECRET, default_url=f"{internal.url}/admin", policy=SourcePolicy()
    )
    assert report.retrying == [job_id] and internal.hits == []
    assert "internal address" in callback_error(ledger_db, job_id)


def test_the_receivers_answer_never_reaches_get_jobs(
    internal: InternalService, ledger_db: Database, service_home: Path
) -> None:
    """With private networks allowed, the callback is sent; its answer stays private."""
    settings = service_settings(service_home, VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES="true")
    app = create_app(
        settings,
        ServiceOptions(deliver_callbacks=True, callback_interval_seconds=0.1),
        database=ledger_db,
        blob_store=LocalBlobStore(service_home / "blobs"),
    )
    job_id = finished_job(ledger_db, f"{internal.url}/hooks/{uuid.uuid4().hex}")
    with serve(app) as url:
        for _ in range(200):
            detail = httpx.get(f"{url}/jobs/{job_id}", timeout=10)
            if detail.json()["callback"]["attempts"]:
                break
            threading.Event().wait(0.05)
    assert len(internal.hits) == 1
    assert detail.json()["callback"]["last_error"] == "receiver answered HTTP 500", detail.text
    assert "INTERNAL-ADMIN" not in detail.text and "token=abc123" not in detail.text


def test_a_redirect_from_a_receiver_is_not_followed(internal: InternalService, ledger_db: Database) -> None:
    internal.status, internal.location = 307, f"{internal.url}/admin/delete-everything"
    job_id = finished_job(ledger_db, f"{internal.url}/hooks")
    callbacks.deliver_pending_callbacks(
        ledger_db, secret=SECRET, policy=SourcePolicy(allow_private_network=True)
    )
    assert internal.hits == ["/hooks"]
    assert callback_error(ledger_db, job_id) == "receiver answered HTTP 307"

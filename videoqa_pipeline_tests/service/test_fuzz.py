"""Fuzz every route from the service's own OpenAPI document (schemathesis): never a 5xx.

Bounded: a few examples per operation, so the whole module takes seconds. The webhook route is
fuzzed twice: as generated (the signature check refuses it) and with each generated body signed
properly, so the JSON validation behind the signature is fuzzed too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed (pip install -e .[test])"
)
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core import NotSet  # noqa: E402

from videoqa_pipeline.service.app import ServiceOptions, create_app  # noqa: E402
from videoqa_pipeline.service.openapi import openapi_document  # noqa: E402
from videoqa_pipeline.service.webhooks import sign_headers  # noqa: E402
from videoqa_pipeline.storage.blobs import LocalBlobStore  # noqa: E402
from videoqa_pipeline.storage.database import Database  # noqa: E402
from videoqa_pipeline_tests.service.conftest import SECRET, serve, service_settings  # noqa: E402

SCHEMA = schemathesis.openapi.from_dict(openapi_document({"webhook", "operations"}))
BOUNDED = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@pytest.fixture(scope="module")
def fuzz_db(admin_url: str, service_home: Path) -> Iterator[Database]:
    from videoqa_pipeline.storage.database import DatabaseSettings
    from videoqa_pipeline_tests.storage.conftest import create_scratch_database

    database = Database(
        DatabaseSettings(
            url=create_scratch_database(admin_url), home=service_home, pool_size=5, timeout_seconds=10
        )
    )
    database.ensure_schema()
    yield database
    database.close()


@pytest.fixture(scope="module")
def base_url(fuzz_db: Database, service_home: Path) -> Iterator[str]:
    app = create_app(
        service_settings(service_home),
        ServiceOptions(),
        database=fuzz_db,
        blob_store=LocalBlobStore(service_home / "fuzz-blobs"),
    )
    with serve(app) as url:
        yield url


@SCHEMA.parametrize()
@BOUNDED
def test_no_route_answers_5xx(case: schemathesis.Case, base_url: str) -> None:
    response = case.call(base_url=base_url, timeout=20)
    case.validate_response(response, checks=[not_a_server_error])


@SCHEMA.include(path="/webhook/jobs").parametrize()
@BOUNDED
def test_signed_fuzzed_bodies_are_accepted_or_refused_never_5xx(
    case: schemathesis.Case, base_url: str
) -> None:
    generated = case.body
    body = (
        b"" if isinstance(generated, NotSet) else json.dumps(generated, default=lambda _unset: None).encode()
    )
    headers = {**sign_headers(SECRET, f"fuzz-{uuid.uuid4().hex}", body), "content-type": "application/json"}
    response = httpx.post(f"{base_url}/webhook/jobs", content=body, headers=headers, timeout=20)
    assert response.status_code in (200, 202, 400, 413, 422), response.text
    if response.status_code >= 400:
        assert response.json()["detail"]

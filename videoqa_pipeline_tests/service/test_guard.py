"""The request guard and the JSON decoder at their edges: limits are exact, a bug is a JSON 500.

The hostile cases themselves (absurd bodies, slow and huge heads, disconnects) are exercised
against ``videoqa serve`` in ``videoqa_pipeline_tests/reliability/test_hostile_http.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from videoqa_pipeline.service.app import ServiceOptions, create_app
from videoqa_pipeline.service.bodies import MAX_INTEGER_DIGITS, MAX_JSON_DEPTH, ClientError, decode_json
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage.blobs import LocalBlobStore
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline_tests.service.conftest import serve


def test_the_decoder_takes_everything_up_to_its_limits() -> None:
    deepest = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert decode_json(deepest.encode()) is not None
    assert decode_json(f'{{"n": {"9" * MAX_INTEGER_DIGITS}, "f": -1.5e300}}'.encode())["f"] == -1.5e300
    # A surrogate *pair* is a real character, and brackets inside strings are not nesting.
    assert decode_json(b'{"s": "\\ud83d\\ude00 [[[[{{{{"}') == {"s": "\U0001f600 [[[[{{{{"}
    assert decode_json(("[" + '"]]]]",' * 100 + "1]").encode())[-1] == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "deeper than"),
        ('{"n": ' + "9" * (MAX_INTEGER_DIGITS + 1) + "}", "digits"),
        ('{"n": -' + "9" * (MAX_INTEGER_DIGITS + 1) + "}", "digits"),
        ('{"f": 1e400}', "too large"),
        ('{"f": -Infinity}', "not a JSON number"),
        ('{"s": "\\udfff\\ud800"}', "surrogate"),
        ('{"s": "\\ud800x"}', "surrogate"),
        ('{"a": 1', "not valid JSON"),
    ],
)
def test_the_decoder_refuses_with_a_reason(body: str, reason: str) -> None:
    with pytest.raises(ClientError) as refused:
        decode_json(body.encode())
    assert refused.value.status == 400 and refused.value.error == "invalid_json"
    assert reason in refused.value.detail and len(refused.value.detail) < 300


def test_a_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(ClientError, match="not UTF-8"):
        decode_json(b'{"s": "\xed\xa0\x80"}')  # a surrogate encoded in UTF-8 bytes is not UTF-8


class _BrokenStore(LocalBlobStore):
    """A blob store with a bug: every media request fails inside the handler."""

    def path_for(self, key: str) -> Path:
        raise RuntimeError("the blob store broke in an unexpected way")


@pytest.fixture()
def broken_url(settings: Settings, ledger_db: Database, service_home: Path) -> Iterator[str]:
    app = create_app(
        settings,
        ServiceOptions(routes=("operations",)),
        database=ledger_db,
        blob_store=_BrokenStore(service_home / "broken-blobs"),
    )
    with serve(app) as url:
        yield url


def test_a_bug_is_a_json_500_counted_in_metrics_with_one_traceback(
    broken_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    response = httpx.get(f"{broken_url}/media/vid/keyframes/0001.jpg", timeout=10)
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error" and "log" in response.json()["detail"]
    assert "broke" not in response.text  # the reason is for the operator, not the client
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == 1 and "GET /media/vid/keyframes/0001.jpg" in tracebacks[0].getMessage()
    metrics = httpx.get(f"{broken_url}/metrics", timeout=10).text
    assert 'route="/media/{key:path}",status="500"' in metrics


def test_query_parameters_out_of_range_are_400_not_500(broken_url: str) -> None:
    for query in ("limit=" + "9" * 5000, "limit=abc", "limit=-1", "limit=0"):
        response = httpx.get(f"{broken_url}/jobs/peek?{query}", timeout=10)
        assert response.status_code == 400, (query, response.text)
        assert response.json()["error"] == "invalid_parameter"
    assert httpx.get(f"{broken_url}/jobs/{'9' * 5000}", timeout=10).status_code in (400, 404)
    assert json.loads(httpx.get(f"{broken_url}/jobs/peek?limit=3", timeout=10).text)["counts"] is not None

"""An OpenAI-compatible endpoint that misbehaves, seen through jobs: the run retries what is
transient (429 honouring Retry-After, 5xx, malformed JSON, a hang), boundedly, and fails a job
at once on a permanent 4xx; every job ends once, with one set of rows.

The provider-level behaviour of each reply (SDK retries, error mapping) is proven in
``videoqa_pipeline_tests/ai/test_openai_provider.py``; here each fault goes through a ledger
job, a real run of the pipeline (in this process, on the embedded PostgreSQL) with the real
``openai`` SDK against a local server, and the job's terminal state. Vision and embeddings use
the API (one keyframe: one chat request, one embeddings request per step attempt); speech is off.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from videoqa_pipeline.ai import clear_cache
from videoqa_pipeline.definitions import build_definitions
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline_tests.ai.openai_test_server import ScriptedReply, error_reply
from videoqa_pipeline_tests.jobs.conftest import (  # noqa: F401 - fixtures
    LedgerDatabase,
    embedded_admin_url,
    embedded_db,
    instance,
    jobs_home,
    tiny_video,
    videos_dir,
)
from videoqa_pipeline_tests.jobs.test_runs import _run_job
from videoqa_pipeline_tests.reliability.fault_support import (
    FaultyOpenAIServer,
    SlowReply,
    as_url,
    database_rows,
)

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
#: Two attempts per step and per job keep the slowest case (two runs, two step attempts each) short.
MAX_ATTEMPTS = 2
#: SDK retries per call: each step attempt makes at most 2 requests.
SDK_RETRIES = 1
CLIENT_TIMEOUT = 1.0
API_KEY = "sk-reliability-faults-0123456789"


@pytest.fixture()
def api() -> Iterator[FaultyOpenAIServer]:
    with FaultyOpenAIServer() as server:
        yield server


@pytest.fixture()
def api_settings(
    api: FaultyOpenAIServer,
    embedded_db: LedgerDatabase,  # noqa: F811
    jobs_home: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Settings:
    """OpenAI vision and embeddings against ``api``; run resources read these from the environment."""
    env = {
        "DATABASE_URL": as_url(embedded_db.url),
        "VIDEOQA_HOME": str(jobs_home),
        "LOG_LEVEL": "WARNING",
        "ENABLE_TRANSCRIPTION": "false",
        "ENABLE_VISION_ANALYSIS": "true",
        "ENABLE_EMBEDDINGS": "true",
        "WORKER_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": api.base_url,
        "VIDEOQA_AI_PROVIDER": "openai",
        "VIDEOQA_OPENAI_MAX_RETRIES": str(SDK_RETRIES),
        "VIDEOQA_OPENAI_TIMEOUT": str(CLIENT_TIMEOUT),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    clear_cache()
    return Settings.from_env(env).validate()


def _submit(db: LedgerDatabase, video: Path, video_id: str) -> int:
    request = ledger.JobRequest(str(video), video_id=video_id, options={"max_frames_per_video": 1})
    return ledger.submit_job(db.database, request).job_id


def _run(
    job_id: int, settings: Settings, db: LedgerDatabase, dagster_instance: dg.DagsterInstance
) -> dg.ExecuteInProcessResult:
    definitions = build_definitions(settings)
    _job, result = _run_job(job_id, definitions, settings, db.database, dagster_instance)
    return result


def _step_retries(result: dg.ExecuteInProcessResult, step: str) -> int:
    return sum(
        1
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY and event.step_key == step
    )


def _one_full_set(db: LedgerDatabase, video_id: str) -> dict[str, int]:
    rows = database_rows(db.database, video_id)
    single = {asset: count for asset, count in rows.items() if asset not in {"scenes", "embeddings"}}
    assert single == {
        "source_video": 1,
        "normalized_video": 1,
        "transcript": 0,  # transcription is off
        "keyframes": 1,
        "frame_analyses": 1,
    }, rows
    assert rows["scenes"] >= 1 and rows["embeddings"] >= 1, rows
    return rows


def test_429_with_retry_after_is_waited_out_within_one_run(
    api: FaultyOpenAIServer,
    api_settings: Settings,
    embedded_db: LedgerDatabase,  # noqa: F811
    instance: dg.DagsterInstance,  # noqa: F811
    tiny_video: Path,  # noqa: F811
) -> None:
    api.script(CHAT, error_reply(429, "Rate limit reached for requests", {"Retry-After": "2"}))
    job_id = _submit(embedded_db, tiny_video, "openai-429")
    result = _run(job_id, api_settings, embedded_db, instance)
    assert result.success
    first, second = api.requests_to(CHAT)
    assert second.at - first.at >= 1.9, "the Retry-After of 2 s was not honoured"
    assert second.headers.get("x-stainless-retry-count") == "1"
    assert _step_retries(result, "frame_analyses") == 0, "the SDK absorbed the 429; the step did not fail"
    job = ledger.get_job(embedded_db.database, job_id)
    assert (job.status, job.attempts, job.error) == ("succeeded", 1, None)
    assert len(api.requests_to(EMBEDDINGS)) == 1
    _one_full_set(embedded_db, "openai-429")


def test_5xx_then_malformed_json_fail_a_run_and_the_next_attempt_succeeds(
    api: FaultyOpenAIServer,
    api_settings: Settings,
    embedded_db: LedgerDatabase,  # noqa: F811
    instance: dg.DagsterInstance,  # noqa: F811
    tiny_video: Path,  # noqa: F811
) -> None:
    # Step attempt 1: 500 and its SDK retry 503. Step attempt 2: a 200 whose JSON is cut off.
    api.script(
        CHAT,
        error_reply(500, "The server had an error while processing your request"),
        error_reply(503, "The engine is currently overloaded"),
        ScriptedReply(200, b'{"id": "chatcmpl-1", "choices": [{"message": {"content": "{\\"capt'),
    )
    job_id = _submit(embedded_db, tiny_video, "openai-5xx")
    first = _run(job_id, api_settings, embedded_db, instance)
    assert not first.success
    assert _step_retries(first, "frame_analyses") == MAX_ATTEMPTS - 1
    after_first = ledger.get_job(embedded_db.database, job_id)
    # Transient, with an attempt left: back to pending with the readable reason.
    assert (after_first.status, after_first.attempts, after_first.transient) == ("pending", 1, True)
    assert after_first.failed_step == "frame_analyses"
    assert "malformed" in (after_first.error or "") or "unusable" in (after_first.error or ""), (
        after_first.error
    )
    assert database_rows(embedded_db.database, "openai-5xx")["frame_analyses"] == 0
    second = _run(job_id, api_settings, embedded_db, instance)
    assert second.success
    job = ledger.get_job(embedded_db.database, job_id)
    assert (job.status, job.attempts, job.run_id) == ("succeeded", 2, second.run_id)
    assert len(api.requests_to(CHAT)) == 4  # 2 + 1 in the first run, 1 in the second
    _one_full_set(embedded_db, "openai-5xx")  # the second run replaced, not added


def test_a_hung_request_times_out_and_is_retried(
    api: FaultyOpenAIServer,
    api_settings: Settings,
    embedded_db: LedgerDatabase,  # noqa: F811
    instance: dg.DagsterInstance,  # noqa: F811
    tiny_video: Path,  # noqa: F811
) -> None:
    api.script(EMBEDDINGS, SlowReply(200, b"{}", delay=CLIENT_TIMEOUT + 2.0))
    job_id = _submit(embedded_db, tiny_video, "openai-hang")
    result = _run(job_id, api_settings, embedded_db, instance)
    assert result.success
    hung, retried = api.requests_to(EMBEDDINGS)
    assert retried.at - hung.at >= CLIENT_TIMEOUT * 0.9, "the client did not wait for its timeout"
    assert retried.at - hung.at < CLIENT_TIMEOUT + 2.0, "the client waited for the hung reply"
    assert ledger.get_job(embedded_db.database, job_id).status == "succeeded"
    _one_full_set(embedded_db, "openai-hang")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "Incorrect API key provided: sk-rel***6789."),
        (400, "Invalid image: the image data you provided does not represent a valid image."),
        (404, "The model `gpt-4o-mini` does not exist or you do not have access to it."),
    ],
)
def test_a_permanent_4xx_fails_the_job_at_once_with_one_request(
    status: int,
    message: str,
    api: FaultyOpenAIServer,
    api_settings: Settings,
    embedded_db: LedgerDatabase,  # noqa: F811
    instance: dg.DagsterInstance,  # noqa: F811
    tiny_video: Path,  # noqa: F811
) -> None:
    api.script(CHAT, error_reply(status, message))
    video_id = f"openai-{status}"
    job_id = _submit(embedded_db, tiny_video, video_id)
    result = _run(job_id, api_settings, embedded_db, instance)
    assert not result.success
    assert len(api.requests_to(CHAT)) == 1 and not api.requests_to(EMBEDDINGS)
    assert _step_retries(result, "frame_analyses") == 0
    job = ledger.get_job(embedded_db.database, job_id)
    assert (job.status, job.attempts, job.transient, job.failed_step) == (
        "failed",
        1,
        False,
        "frame_analyses",
    )
    assert f"OpenAI API error {status}" in (job.error or "") and message in (job.error or ""), job.error
    assert video_id in (job.error or "")
    assert API_KEY not in (job.error or "")
    rows = database_rows(embedded_db.database, video_id)
    assert rows["frame_analyses"] == 0 and rows["embeddings"] == 0, rows
    assert rows["source_video"] == 1 and rows["keyframes"] == 1, rows


def test_a_persistent_5xx_is_retried_a_bounded_number_of_times(
    api: FaultyOpenAIServer,
    api_settings: Settings,
    embedded_db: LedgerDatabase,  # noqa: F811
    instance: dg.DagsterInstance,  # noqa: F811
    tiny_video: Path,  # noqa: F811
) -> None:
    bound = MAX_ATTEMPTS * MAX_ATTEMPTS * (SDK_RETRIES + 1)  # runs x step attempts x SDK tries
    api.script(EMBEDDINGS, *(error_reply(500, "upstream failure") for _ in range(bound + 5)))
    job_id = _submit(embedded_db, tiny_video, "openai-down")
    for _attempt in range(MAX_ATTEMPTS):
        assert not _run(job_id, api_settings, embedded_db, instance).success
    job = ledger.get_job(embedded_db.database, job_id)
    assert (job.status, job.attempts, job.transient, job.failed_step) == (
        "failed",
        MAX_ATTEMPTS,
        True,
        "embeddings",
    )
    assert "OpenAI API error 500" in (job.error or "") and "upstream failure" in (job.error or "")
    assert len(api.requests_to(EMBEDDINGS)) == bound
    with pytest.raises(AssertionError):  # no further automatic attempt is claimed
        _run(job_id, api_settings, embedded_db, instance)
    assert len(api.requests_to(EMBEDDINGS)) == bound
    assert database_rows(embedded_db.database, "openai-down")["embeddings"] == 0

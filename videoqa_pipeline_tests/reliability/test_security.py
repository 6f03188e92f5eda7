"""Security through every intake: path traversal, SQL injection, secrets, and where sources may point.

Every case goes through the path an attacker would use (a signed webhook, an SQS message, a row
in the jobs table, ``videoqa submit``, a file dropped in the inbox, the search routes) and checks
what the deployment did: the readable refusal, the ledger, the tables, the blob store, the logs.
Webhook signature bypasses are covered in ``videoqa_pipeline_tests/service``.
"""

from __future__ import annotations

import ast
import http.server
import json
import os
import shutil
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from videoqa_pipeline import aws, media
from videoqa_pipeline.cli import main as cli_main
from videoqa_pipeline.defs.sensors.inbox_sensor import take_in
from videoqa_pipeline.defs.sensors.sqs_sensor import drain_queue
from videoqa_pipeline.fetch import SourcePolicy, SourceUnavailableError, fetched_source
from videoqa_pipeline.service.app import create_app
from videoqa_pipeline.service.health import PROBE_PREFIX
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.blobs import TEMPORARY_PREFIX
from videoqa_pipeline.storage.schema import JOBS_TABLE
from videoqa_pipeline.video_ids import validate_video_id
from videoqa_pipeline_tests.ai.openai_test_server import OpenAITestServer
from videoqa_pipeline_tests.reliability.job_harness import JobHarness, process_env
from videoqa_pipeline_tests.service.conftest import serve
from videoqa_pipeline_tests.service.test_intake import post

PACKAGE = Path(__file__).resolve().parents[2] / "videoqa_pipeline"

#: Distinctive secrets: none of them may appear anywhere a user or an operator can read.
OPENAI_KEY = "sk-test-OPENAI-6f1d0c2e9b7a4e3f"
WEBHOOK_SECRET = "whsecret-test-WEBHOOK-84c2aa19d0e54b7b"
DATABASE_PASSWORD = "pgpass-test-DATABASE-5b0e7d3c61f24a98"
AWS_SECRET = "awssecret-test-AWS-0d9c8b7a6f5e4d3c2b1a"
SECRETS = {
    "OPENAI_API_KEY": OPENAI_KEY,
    "WEBHOOK_SECRET": WEBHOOK_SECRET,
    "DATABASE_URL password": DATABASE_PASSWORD,
    "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
}

TRAVERSALS = ["../escape", "../../etc/passwd", "/etc/passwd", "a/../../b", "..", "nul\x00byte", "C:\\windows"]
INJECTIONS = [
    "'; DROP TABLE videoqa_jobs; --",
    "' OR '1'='1",
    "quote\" and 'apostrophe'",
    "back\\slash\\'; DELETE FROM videoqa_videos; --",
    "$$; DROP TABLE videoqa_embeddings; $$",
    "%s %(name)s {0} {}",
]


@pytest.fixture(scope="module")
def openai_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        yield server


@pytest.fixture(scope="module")
def harness_database_url(harness_database_url: str) -> str:
    """The harness database, reached with a password (the embedded server trusts local users, so
    any password works; what matters is that the deployment carries one)."""
    parts = urllib.parse.urlsplit(harness_database_url)
    user = parts.username or "postgres"
    return urllib.parse.urlunsplit(
        parts._replace(netloc=f"{user}:{DATABASE_PASSWORD}@{parts.hostname or ''}")
    )


@pytest.fixture(scope="module")
def harness_overrides(openai_server: OpenAITestServer) -> dict[str, str]:
    """Every model on the OpenAI-compatible test server, webhook intake, secrets everywhere."""
    return {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_server.base_url,
        "ENABLE_TRANSCRIPTION": "true",
        "ENABLE_VISION_ANALYSIS": "true",
        "ENABLE_EMBEDDINGS": "true",
        "JOB_SOURCE_TYPE": "postgres,webhook",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WORKER_DEV_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "AKIATESTSECURITY",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "LOG_LEVEL": "DEBUG",
    }


@pytest.fixture(scope="module")
def service(harness: JobHarness) -> Iterator[str]:
    """The HTTP service of the harness deployment (webhook intake, operations, search) on loopback."""
    app = create_app(harness.settings, database=harness.database, blob_store=harness.blob_store)
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def inbox_video(harness: JobHarness) -> Path:
    """A short video with sound inside the inbox: the one local place remote jobs may read."""
    inbox = harness.settings.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    return media.make_sample_video(
        inbox / "accepted" / "talk.mp4", scene_seconds=(1.0, 1.0), width=160, height=120, preset="ultrafast"
    ).path


def webhook(service: str, message: dict[str, Any], *, webhook_id: str | None = None) -> httpx.Response:
    return post(service, json.dumps(message).encode(), secret=WEBHOOK_SECRET, webhook_id=webhook_id)


def job_count(harness: JobHarness) -> int:
    return harness.count(JOBS_TABLE)


def cli(harness: JobHarness, *args: str) -> Any:
    with process_env(harness.env):
        return CliRunner().invoke(cli_main, list(args), catch_exceptions=False)


# ------------------------------------------------------------------------------------------------
# Secrets


def test_secrets_never_reach_logs_run_config_metadata_or_responses(
    harness: JobHarness,
    service: str,
    inbox_video: Path,
    openai_server: OpenAITestServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level("DEBUG")
    seen: list[str] = []
    accepted = webhook(service, {"source_uri": str(inbox_video), "video_id": "secret-talk"})
    assert accepted.status_code == 202, accepted.text
    seen.append(accepted.text)
    outcome = harness.run_job(accepted.json()["job_id"])
    assert outcome.job.status == "succeeded", outcome.job.error
    # The key was used: every model call went to the test server with it.
    calls = [r for r in openai_server.requests if r.path.startswith("/v1/")]
    assert {r.path for r in calls} >= {"/v1/audio/transcriptions", "/v1/chat/completions", "/v1/embeddings"}
    assert all(r.headers.get("authorization") == f"Bearer {OPENAI_KEY}" for r in calls)

    for run in outcome.runs:
        record = harness.instance.get_run_by_id(run.run_id)
        assert record is not None
        seen += [json.dumps(record.run_config, default=str), json.dumps(dict(record.tags))]
        seen += [repr(entry) for entry in harness.instance.all_logs(run.run_id)]  # metadata included
    for path in (
        "/jobs/1",
        "/stats",
        "/healthz?ready=1",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/jobs/peek",
    ):
        seen.append(httpx.get(f"{service}{path}", timeout=30).text)
    seen.append(httpx.get(f"{service}/search", params={"q": "scene"}, timeout=30).text)
    seen.append(httpx.post(f"{service}/ask", json={"question": "what is shown?"}, timeout=30).text)
    for args in (("check-config",), ("check-config", "--json"), ("status", "--json")):
        result = cli(harness, *args)
        seen.append(result.output)
    with process_env({**harness.env, "STORAGE_TYPE": "s3"}):  # a broken config lists its problems
        seen.append(CliRunner().invoke(cli_main, ["check-config"]).output)
    captured = capfd.readouterr()
    seen += [captured.out, captured.err, caplog.text]
    everything = "\n".join(seen)
    assert "secret-talk" in everything and "ASSET_MATERIALIZATION" in everything, "the checks saw the run"
    leaks = [name for name, secret in SECRETS.items() if secret in everything]
    assert not leaks, f"secrets visible in logs, run config, metadata or responses: {leaks}"


# ------------------------------------------------------------------------------------------------
# Path traversal


@pytest.mark.parametrize("video_id", TRAVERSALS)
def test_traversal_in_video_ids_is_refused_by_every_intake(
    harness: JobHarness, service: str, inbox_video: Path, moto_endpoint: str, video_id: str
) -> None:
    before = job_count(harness)
    # Webhook: refused before anything is written.
    answer = webhook(service, {"source_uri": str(inbox_video), "video_id": video_id})
    assert answer.status_code == 422 and "video ID" in answer.json()["detail"], answer.text
    assert job_count(harness) == before
    # videoqa submit: refused with the rule.
    result = cli(harness, "submit", str(inbox_video), "--video-id", video_id)
    assert result.exit_code != 0 and "not allowed" in result.output, result.output
    assert job_count(harness) == before
    # A producer's INSERT and an SQS message: recorded as failed, never as a partition key.
    with harness.connect() as conn:
        inserted = conn.execute(
            f"INSERT INTO {JOBS_TABLE} (source_uri, video_id) VALUES (%s, %s) RETURNING id",
            (str(inbox_video), video_id.replace("\x00", "\\0")),  # SQL text cannot hold NUL itself
        ).fetchone()
    assert inserted is not None
    sqs = aws.client("sqs", aws.AwsConfig(region="us-east-1", endpoint_url=moto_endpoint))
    queue = sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(
        QueueUrl=queue, MessageBody=json.dumps({"source_uri": "s3://b/k.mp4", "video_id": video_id})
    )
    report = drain_queue(sqs, queue, harness.database, wait_seconds=0, policy=harness.settings.source_policy)
    assert report.rejected == 1 and not report.jobs
    assert harness.tick() == [], "nothing to run"
    for job in ledger.list_jobs(harness.database, limit=2):
        assert job.status == "failed" and job.video_id is None, job
        assert "not allowed" in (job.error or ""), job.error
    assert videos_partitions_of(harness) <= set(ledger_video_ids(harness))


def videos_partitions_of(harness: JobHarness) -> set[str]:
    return set(harness.instance.get_dynamic_partitions("videos"))


def ledger_video_ids(harness: JobHarness) -> list[str]:
    with harness.connect() as conn:
        rows = conn.execute(f"SELECT video_id FROM {JOBS_TABLE} WHERE video_id IS NOT NULL").fetchall()
    return [str(row[0]) for row in rows]


def test_inbox_file_names_become_safe_video_ids_and_symlinks_are_ignored(harness: JobHarness) -> None:
    inbox = harness.settings.inbox
    names = [
        "x..mp4",
        "-rf ü日本 'x'; DROP TABLE videoqa_jobs;.mp4",
        "a b\\c.mkv",
        "%2e%2e%2fescape.mp4",
        "…\\..\\up.mp4",
    ]
    hidden = ["..mp4", "..."]  # hidden files are never taken in
    for name in names + hidden:
        (inbox / name).write_bytes(name.encode() * 100)
    link = inbox / "passwd.mp4"
    link.symlink_to("/etc/passwd")
    past = 1_000_000_000
    for path in inbox.iterdir():
        os.utime(path, (past, past), follow_symlinks=False)
    submitted, _ = take_in(inbox, harness.database, None, settle_seconds=0)
    try:
        assert len(submitted) == len(names), "every regular file, and not the symlink"
        assert link.is_symlink(), "a symlink is left alone"
        assert all((inbox / name).is_file() for name in hidden)
        for job in submitted:
            row = ledger.get_job(harness.database, job.job_id)
            assert Path(row.source_uri).parent == (inbox / "accepted").resolve(), row.source_uri
            assert job.video_id and "/" not in job.video_id and ".." not in job.video_id, job.video_id
    finally:
        for job in submitted:
            Path(ledger.get_job(harness.database, job.job_id).source_uri).unlink(missing_ok=True)
            ledger.cancel_job(harness.database, job.job_id)
        link.unlink()
        for name in hidden:
            (inbox / name).unlink()


def test_remote_jobs_only_read_local_files_under_the_allowed_roots(
    harness: JobHarness, service: str, inbox_video: Path, tmp_path: Path, moto_endpoint: str
) -> None:
    inbox = harness.settings.inbox
    escape_link = inbox / "accepted" / "escape.mp4"
    escape_link.symlink_to(tmp_path)  # inside the root by name, outside once resolved
    outside = tmp_path / "private.mp4"
    shutil.copy(inbox_video, outside)
    refused = [
        str(outside),
        outside.as_uri(),
        f"{inbox}/../{outside.relative_to('/')}",
        f"{inbox}/accepted/../../../../../../{outside.relative_to('/')}",
        str(escape_link / "private.mp4"),
        "/etc/passwd",
        "file:///etc/passwd",
    ]
    before = job_count(harness)
    for source in refused:
        answer = webhook(service, {"source_uri": source})
        assert answer.status_code == 422, (source, answer.text)
        assert "outside the directories remote jobs may read" in answer.json()["detail"], answer.text
    assert job_count(harness) == before
    sqs = aws.client("sqs", aws.AwsConfig(region="us-east-1", endpoint_url=moto_endpoint))
    queue = sqs.create_queue(QueueName=f"roots-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"source_uri": str(outside)}))
    report = drain_queue(sqs, queue, harness.database, wait_seconds=0, policy=harness.settings.source_policy)
    (job,) = report.jobs
    row = ledger.get_job(harness.database, job.job_id)
    assert row.status == "failed" and "outside the directories" in (row.error or ""), row
    # A row claiming to come from a webhook is checked again when the job sensor claims it.
    with harness.connect() as conn:
        conn.execute(
            f"INSERT INTO {JOBS_TABLE} (source_uri, source_kind, external_id) VALUES (%s, 'webhook', %s)",
            (str(outside), uuid.uuid4().hex),
        )
    assert harness.tick() == []
    (claimed,) = ledger.list_jobs(harness.database, limit=1)
    assert (claimed.status, claimed.failed_step) == ("failed", "intake") and "outside" in (
        claimed.error or ""
    )
    # Trusted producers (SQL, CLI) keep reading local paths; inside the root a webhook may too.
    ok = webhook(service, {"source_uri": str(inbox_video), "video_id": "inside-root"})
    assert ok.status_code == 202, ok.text
    ledger.cancel_job(harness.database, ok.json()["job_id"])


# ------------------------------------------------------------------------------------------------
# Where sources may point


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("gopher://example.com/video.mp4", "unsupported scheme"),
        ("ftp://example.com/video.mp4", "unsupported scheme"),
        ("javascript:alert(1)", "unsupported scheme"),
        ("http://127.0.0.1:8080/video.mp4", "internal address"),
        ("http://localhost/video.mp4", "internal address"),
        ("http://[::1]/video.mp4", "internal address"),
        ("http://169.254.169.254/latest/meta-data/iam", "internal address"),
        ("http://10.0.0.5/video.mp4", "internal address"),
        ("https://[::ffff:192.168.1.1]/video.mp4", "internal address"),
        ("http://0.0.0.0:5432/", "internal address"),
    ],
)
def test_sources_outside_the_allow_list_are_refused_at_intake(
    harness: JobHarness, service: str, source: str, reason: str
) -> None:
    before = job_count(harness)
    answer = webhook(service, {"source_uri": source})
    assert answer.status_code == 422 and reason in answer.json()["detail"], answer.text
    assert job_count(harness) == before
    result = cli(harness, "submit", source)
    assert result.exit_code != 0 and reason in result.output, result.output


class _Redirector(http.server.BaseHTTPRequestHandler):
    """Redirects ``/to?url=...`` to ``url``; serves a few bytes anywhere else."""

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        if parts.path == "/to":
            self.send_response(302)
            self.send_header("Location", urllib.parse.parse_qs(parts.query)["url"][0])
            self.end_headers()
            return
        body = b"video bytes"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def redirector() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_host_name_that_resolves_to_loopback_is_refused_when_the_run_connects(
    harness: JobHarness, redirector: str
) -> None:
    """``2130706433`` is 127.0.0.1 as one number: no name check sees it, the connection check does."""
    port = urllib.parse.urlsplit(redirector).port
    job_id = harness.submit(f"http://2130706433:{port}/video.mp4", video_id="decimal-loopback")
    outcome = harness.run_job(job_id)
    job = outcome.job
    assert (job.status, job.failed_step, job.transient, job.attempts) == ("failed", "source_video", False, 1)
    assert outcome.step_retries == [0] and "internal address 127.0.0.1" in (job.error or ""), job.error
    assert set(harness.rows("decimal-loopback").values()) == {0}


class _LoopbackServerAllowed(SourcePolicy):
    """The default policy, except that the test's own loopback server counts as external."""

    def problem(self, source_uri: str, *, remote: bool) -> str | None:
        if urllib.parse.urlsplit(source_uri).hostname == "127.0.0.1":
            return None
        return super().problem(source_uri, remote=remote)

    def check_address(self, url: str, address: str) -> None:
        if address != "127.0.0.1":
            super().check_address(url, address)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "internal address"),
        ("http://localhost:1/secret", "internal address"),
        ("http://[::1]:1/secret", "internal address"),
        ("file:///etc/passwd", "outside the directories"),
        ("gopher://127.0.0.2/x", "unsupported scheme"),
    ],
)
def test_every_redirect_is_checked_again(redirector: str, target: str, reason: str) -> None:
    policy = _LoopbackServerAllowed()
    with fetched_source(f"{redirector}/plain.mp4", policy=policy) as path:
        assert path.read_bytes() == b"video bytes"  # the first hop alone is fine
    source = f"{redirector}/to?url={urllib.parse.quote(target, safe='')}"
    with (
        pytest.raises(SourceUnavailableError, match="redirected") as refused,
        fetched_source(source, policy=policy),
    ):
        pass
    assert refused.value.permanent and reason in str(refused.value)


# ------------------------------------------------------------------------------------------------
# SQL injection


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_payloads_are_stored_verbatim_and_tables_stay_intact(
    harness: JobHarness, service: str, payload: str
) -> None:
    tables = harness.table_names()
    jobs_before = job_count(harness)
    message = {
        "source_uri": f"s3://bucket/{payload}.mp4",
        "callback_url": f"https://example.com/done?note={payload}",
        "options": {"language": payload},
    }
    webhook_id = f"evt-{uuid.uuid4().hex[:6]}-{payload}"
    answer = webhook(service, message, webhook_id=webhook_id)
    assert answer.status_code == 202, answer.text
    job = ledger.get_job(harness.database, answer.json()["job_id"])
    assert (job.source_uri, job.callback_url, job.external_id) == (
        message["source_uri"],
        message["callback_url"],
        webhook_id,
    )
    assert job.options == {"language": payload}
    ledger.cancel_job(harness.database, job.id)
    # Search text and video filters, over HTTP and the CLI.
    found = httpx.get(f"{service}/search", params={"q": payload, "video": payload}, timeout=30)
    assert found.status_code in (200, 400), found.text
    asked = httpx.post(f"{service}/ask", json={"question": payload, "video_ids": [payload]}, timeout=30)
    assert asked.status_code in (200, 400), asked.text
    for args in (("search", payload, "--video", payload), ("status", "--status", payload)):
        result = cli(harness, *args)
        assert "Traceback" not in result.output and "syntax error" not in result.output, result.output
    assert harness.table_names() == tables and job_count(harness) == jobs_before + 1


def test_an_error_message_quoting_the_source_is_stored_verbatim(harness: JobHarness, tmp_path: Path) -> None:
    name = "it's'; DROP TABLE videoqa_videos; -- \\ %s.mp4"
    bad = tmp_path / name
    bad.write_text("not a video\n" * 50)
    tables = harness.table_names()
    outcome = harness.run_job(harness.submit(str(bad), video_id="quoted-error"))
    assert outcome.job.status == "failed" and name in (outcome.job.error or ""), outcome.job.error
    with harness.connect() as conn:
        row = conn.execute(f"SELECT error FROM {JOBS_TABLE} WHERE id = %s", (outcome.job.id,)).fetchone()
    assert row is not None and row[0] == outcome.job.error
    assert harness.table_names() == tables


@pytest.mark.parametrize(
    "message",
    [
        {"source_uri": "s3://bucket/a\x00b.mp4"},
        {"source_uri": "s3://bucket/a.mp4", "callback_url": "https://example.com/\x00"},
        {"source_uri": "s3://bucket/a.mp4", "options": {"language": "en\x00"}},
    ],
)
def test_nul_characters_are_refused_not_a_server_error(
    harness: JobHarness, service: str, moto_endpoint: str, message: dict[str, Any]
) -> None:
    before = job_count(harness)
    answer = webhook(service, message)
    assert answer.status_code == 422 and "NUL" in answer.json()["detail"], answer.text
    assert job_count(harness) == before
    sqs = aws.client("sqs", aws.AwsConfig(region="us-east-1", endpoint_url=moto_endpoint))
    queue = sqs.create_queue(QueueName=f"nul-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(message))
    report = drain_queue(sqs, queue, harness.database, wait_seconds=0, policy=harness.settings.source_policy)
    assert report.deleted == 1, "recorded and acknowledged, not redelivered forever"
    (latest,) = ledger.list_jobs(harness.database, limit=1)
    assert latest.status == "failed" and "NUL" in (latest.error or ""), latest


#: Interpolations into SQL text that the rules below cannot prove harmless, each with its reason.
ALLOWED_INTERPOLATIONS = {
    "dimension": "migrations: a loop over the int constants HNSW_INDEXED_DIMENSIONS",
    "hnsw_index_name(dimension)": "migrations: an index name built from one of those ints",
}
#: Calls whose result is a number: nothing to inject.
NUMERIC_BUILTINS = {"int", "float", "len", "round", "max", "min"}


def _assigned(name: str, scope: ast.AST) -> list[ast.expr]:
    return [
        stmt.value
        for stmt in ast.walk(scope)
        if isinstance(stmt, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets)
    ]


def _interpolations(node: ast.expr, scope: ast.AST) -> list[ast.expr]:
    """Expressions formatted into the SQL text ``node`` (following a local name to its assignment)."""
    if isinstance(node, ast.Name):
        return [part for value in _assigned(node.id, scope) for part in _interpolations(value, scope)]
    if isinstance(node, ast.JoinedStr):
        return [value.value for value in node.values if isinstance(value, ast.FormattedValue)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return [node]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)  # "...".format(...): plain text formatting
    ):
        return [node]
    return []


def _numeric_functions(scope: ast.AST) -> set[str]:
    """Functions of the module holding ``scope`` annotated to return ``int`` or ``float``."""
    module = getattr(scope, "module_tree", None)
    return {
        node.name
        for node in ast.walk(module or scope)
        if isinstance(node, ast.FunctionDef)
        and isinstance(node.returns, ast.Name)
        and node.returns.id in ("int", "float")
    }


def _is_constant(expr: ast.expr, scope: ast.AST) -> bool:
    """Module constants (``JOBS_TABLE``, ``KEYFRAMES.name``), integers, and local names that only
    ever hold literal SQL (``where = "WHERE status = %s" if status else ""``): not values."""
    if isinstance(expr, ast.Constant):
        return isinstance(expr.value, int | str)
    if isinstance(expr, ast.IfExp):
        return _is_constant(expr.body, scope) and _is_constant(expr.orelse, scope)
    if isinstance(expr, ast.BinOp):
        return _is_constant(expr.left, scope) and _is_constant(expr.right, scope)
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        return expr.func.id in NUMERIC_BUILTINS or expr.func.id in _numeric_functions(scope)
    root = expr
    while isinstance(root, ast.Attribute):
        root = root.value
    if not isinstance(root, ast.Name):
        return False
    if root.id.lstrip("_").isupper():
        return True
    values = _assigned(root.id, scope) if root is expr else []
    return bool(values) and all(_is_constant(value, scope) for value in values)


def test_sql_text_is_never_built_from_values() -> None:
    """Every ``execute``/``copy`` gets a literal, a ``psycopg.sql`` composition, or text with only
    constants (table names, column lists) and numbers formatted in: values always go as parameters."""
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
            function.module_tree = tree  # type: ignore[attr-defined]  # for _numeric_functions
            for call in ast.walk(function):
                if not (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr in ("execute", "executemany", "copy")
                    and call.args
                ):
                    continue
                for expr in _interpolations(call.args[0], function):
                    text = ast.unparse(expr)
                    if not _is_constant(expr, function) and text not in ALLOWED_INTERPOLATIONS:
                        offences.append(f"{path.relative_to(PACKAGE.parent)}:{call.lineno}: {text}")
    assert not offences, (
        "SQL text built from values (use %s parameters, or psycopg.sql.Identifier for names):\n"
        + "\n".join(offences)
    )


def test_nothing_was_written_outside_the_blob_root_and_the_inbox(
    harness: JobHarness, reliability_home: Path
) -> None:
    """After every case of this module: only video folders with safe IDs in the blob root, no
    temporary or partial blobs, and nothing else in the deployment's home."""
    settings = harness.settings
    strays = [
        path
        for path in reliability_home.rglob("*")
        if path.is_file()
        and not (path.is_relative_to(settings.blob_root) or path.is_relative_to(settings.inbox))
    ]
    assert not strays, strays
    settings.blob_root.mkdir(parents=True, exist_ok=True)  # absent when this test runs alone
    for folder in settings.blob_root.iterdir():
        if folder.name == PROBE_PREFIX:  # the readiness check writes and deletes a probe blob here
            assert not [path for path in folder.rglob("*") if path.is_file()], "the probe is deleted"
            continue
        assert validate_video_id(folder.name) and folder.is_dir(), folder
    leftovers = [path for path in settings.blob_root.rglob("*") if path.name.startswith(TEMPORARY_PREFIX)]
    assert not leftovers, leftovers


def test_source_policy_settings_are_validated_and_shown(tmp_path: Path) -> None:
    from videoqa_pipeline.settings import Settings

    broken = Settings.from_env(
        {
            "VIDEOQA_ALLOWED_LOCAL_ROOTS": f"{tmp_path}{os.pathsep}relative/dir",
            "VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES": "sometimes",
            "VIDEOQA_FETCH_TIMEOUT": "0",
        }
    ).problems()
    assert any("VIDEOQA_ALLOWED_LOCAL_ROOTS" in p and "relative/dir" in p for p in broken), broken
    assert any("VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES" in p for p in broken), broken
    assert any("VIDEOQA_FETCH_TIMEOUT" in p for p in broken), broken
    default = Settings.from_env({"VIDEOQA_HOME": str(tmp_path)})
    assert default.source_policy == SourcePolicy((tmp_path / "inbox",), False, 60.0)
    shown = default.describe()
    assert shown["VIDEOQA_ALLOWED_LOCAL_ROOTS"] == str(tmp_path / "inbox")
    assert shown["VIDEOQA_ALLOW_PRIVATE_NETWORK_SOURCES"] == "False"
    assert (
        Settings.from_env({"VIDEOQA_ALLOWED_LOCAL_ROOTS": os.pathsep}).source_policy.allowed_local_roots == ()
    )

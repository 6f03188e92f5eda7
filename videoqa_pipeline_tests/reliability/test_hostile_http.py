"""Hostile HTTP clients against ``videoqa serve`` as deployed: a real process on loopback.

Every request that is the client's fault must get a 4xx with a readable reason, counted in
``/metrics``; nothing a client sends may hold memory or a connection without bound, or slow the
event loop for everyone else. The service runs as ``videoqa serve`` in a child process (the same
uvicorn configuration as production), with short header and body timeouts so the timeout cases
take about a second each; its log is kept to check what an operator would read.
"""

# ruff: noqa: F811 - fixtures imported from other test packages are redefined as parameters

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from videoqa_pipeline.service.webhooks import sign_headers
from videoqa_pipeline_tests.jobs.conftest import embedded_admin_url, jobs_home  # noqa: F401 - fixtures
from videoqa_pipeline_tests.reliability.fault_support import as_url
from videoqa_pipeline_tests.service.conftest import unused_port
from videoqa_pipeline_tests.storage.conftest import create_scratch_database

SECRET = "hostile-http-secret-0123456789abcdef"
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
MAX_HEADER_BYTES = 8192
MAX_HEADERS = 50


@dataclass
class Served:
    """A running ``videoqa serve`` child: its base URL, port, process and log file."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text("utf-8", errors="replace")


@pytest.fixture(scope="module")
def served(embedded_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("hostile-home")
    port = unused_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(home)),
        "VIDEOQA_HOME": str(home),
        "DATABASE_URL": as_url(create_scratch_database(embedded_admin_url)),
        "JOB_SOURCE_TYPE": "postgres,webhook",
        "WEBHOOK_SECRET": SECRET,
        "WORKER_DEV_HTTP": "true",
        "LOG_LEVEL": "INFO",
        "VIDEOQA_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "VIDEOQA_HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "VIDEOQA_HTTP_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "VIDEOQA_HTTP_MAX_HEADERS": str(MAX_HEADERS),
    }
    log = home / "serve.log"
    command = [sys.executable, "-m", "videoqa_pipeline.cli", "serve", "--host", "127.0.0.1"]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(port), "--no-callbacks"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"videoqa serve did not start:\n{log.read_text()}")
        time.sleep(0.1)
    yield Served(url, port, process, log)
    process.terminate()
    process.wait(timeout=20)


def request_counts(served: Served) -> dict[tuple[str, str], float]:
    """``(route, status) -> count`` of ``videoqa_http_requests_total``."""
    text = httpx.get(f"{served.url}/metrics", timeout=10).text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "videoqa_http_requests_total":
                key = (sample.labels["route"], sample.labels["status"])
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def counted(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], status: int) -> float:
    """How many more requests answered ``status`` (any route) between two scrapes."""
    wanted = str(status)
    return sum(value - before.get(key, 0.0) for key, value in after.items() if key[1] == wanted)


def signed_post(served: Served, body: bytes, **header_changes: str) -> httpx.Response:
    headers = {**sign_headers(SECRET, f"evt-{uuid.uuid4().hex}", body), "content-type": "application/json"}
    headers.update({name.replace("_", "-"): value for name, value in header_changes.items()})
    return httpx.post(f"{served.url}/webhook/jobs", content=body, headers=headers, timeout=20)


def read_response(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection or ``timeout`` passes."""
    sock.settimeout(timeout)
    received = b""
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            received += chunk
    return received


def trickle(sock: socket.socket, piece: bytes, seconds: float) -> bytes:
    """Send ``piece`` every 0.25 s until the server answers or closes; return what it sent."""
    deadline = time.monotonic() + seconds
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while time.monotonic() < deadline:
            sock.sendall(piece)
            sock.settimeout(0.25)
            try:
                first = sock.recv(65536)
            except TimeoutError:
                continue
            return first + read_response(sock, timeout=5)
    return read_response(sock, timeout=5)


def status_of(raw: bytes) -> int | None:
    if not raw.startswith(b"HTTP/1.1 "):
        return None
    return int(raw[9:12])


# ------------------------------------------------------------------------------------------------
# Item: bad input answers 4xx with a reason, never 500, and every status is counted


@pytest.mark.parametrize(
    ("name", "body", "error"),
    [
        ("nested 5000 deep", b'{"question": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json"),
        (
            "nested objects",
            b'{"question": "q", "x": ' + b'{"a": ' * 3000 + b"1" + b"}" * 3000 + b"}",
            "invalid_json",
        ),
        ("infinite k", b'{"question": "q", "k": Infinity}', "invalid_json"),
        ("overflowing k", b'{"question": "q", "k": 1e999}', "invalid_json"),
        ("NaN start", b'{"question": "q", "start": NaN}', "invalid_json"),
        ("huge integer k", b'{"question": "q", "k": ' + b"9" * 5000 + b"}", "invalid_json"),
        ("lone surrogate", b'{"question": "\\ud800"}', "invalid_json"),
    ],
)
def test_absurd_ask_bodies_answer_400_with_a_reason(
    served: Served, name: str, body: bytes, error: str
) -> None:
    before = request_counts(served)
    response = httpx.post(
        f"{served.url}/ask", content=body, headers={"content-type": "application/json"}, timeout=20
    )
    assert response.status_code == 400, (name, response.status_code, response.text[:300])
    answer = response.json()
    assert answer["error"] == error and len(answer["detail"]) > 15, answer
    assert counted(before, request_counts(served), 400) == 1


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("lone surrogate in the source", b'{"source_uri": "s3://bucket/\\ud800.mp4"}', 400),
        ("lone low surrogate in a key", b'{"source_uri": "s3://bucket/a.mp4", "\\udc00": 1}', 400),
        (
            "huge integer option",
            b'{"source_uri": "s3://bucket/a.mp4", "options": {"max_frames_per_video": ' + b"7" * 5000 + b"}}",
            400,
        ),
        (
            "non-finite option",
            b'{"source_uri": "s3://bucket/a.mp4", "options": {"max_frames_per_video": NaN}}',
            400,
        ),
        (
            "deep options",
            b'{"source_uri": "s3://bucket/a.mp4", "options": ' + b"[" * 900 + b"]" * 900 + b"}",
            400,
        ),
    ],
)
def test_signed_absurd_bodies_answer_4xx(served: Served, name: str, body: bytes, status: int) -> None:
    before = request_counts(served)
    response = signed_post(served, body)
    assert response.status_code == status, (name, response.status_code, response.text[:300])
    assert response.json()["error"] == "invalid_json" and response.json()["detail"]
    assert counted(before, request_counts(served), status) == 1


@pytest.mark.parametrize(
    "timestamp",
    ["9" * 400, "-" + "9" * 400, "1" + "0" * 30],
)
def test_absurd_timestamps_answer_401(served: Served, timestamp: str) -> None:
    before = request_counts(served)
    response = signed_post(served, b'{"source_uri": "s3://bucket/a.mp4"}', webhook_timestamp=timestamp)
    assert response.status_code == 401, response.text[:300]
    assert response.json()["error"] in ("bad_timestamp", "stale_timestamp")
    assert "webhook-timestamp" in response.json()["detail"]
    assert counted(before, request_counts(served), 401) == 1


def test_unknown_routes_and_methods_are_counted_too(served: Served) -> None:
    before = request_counts(served)
    assert httpx.get(f"{served.url}/no/such/route/{uuid.uuid4().hex}", timeout=10).status_code == 404
    assert httpx.delete(f"{served.url}/healthz", timeout=10).status_code == 405
    after = request_counts(served)
    assert counted(before, after, 404) == 1 and counted(before, after, 405) == 1
    # One label for every unmatched path: a scanner cannot grow the metrics without bound.
    assert not [key for key in after if "no/such/route" in key[0]]


def test_a_client_that_disconnects_mid_body_is_one_log_line(served: Served) -> None:
    before = request_counts(served)
    lines_before = served.log_text().count("\n")
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(
            b"POST /ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"question": "'
        )
        time.sleep(0.3)
    time.sleep(1.0)
    new_lines = served.log_text().splitlines()[lines_before:]
    assert "Traceback" not in "\n".join(new_lines), "\n".join(new_lines)
    mentions = [line for line in new_lines if "disconnected" in line]
    assert len(mentions) == 1 and "/ask" in mentions[0], new_lines
    assert counted(before, request_counts(served), 499) == 1


# ------------------------------------------------------------------------------------------------
# Item: header size and count limits, header and body timeouts


def test_an_unfinished_huge_header_is_refused_after_the_limit(served: Served) -> None:
    before = request_counts(served)
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ")
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 4 * 1024 * 1024:  # never finished: no CRLF CRLF
                sock.sendall(b"a" * 65536)
                sent += 65536
        raw = read_response(sock, timeout=5)
    assert status_of(raw) == 431, raw[:300]
    assert sent < 4 * 1024 * 1024, "the server kept reading a header it can never accept"
    assert b"VIDEOQA_HTTP_MAX_HEADER_BYTES" in raw
    assert counted(before, request_counts(served), 431) == 1


def test_too_many_headers_are_refused(served: Served) -> None:
    before = request_counts(served)
    headers = {f"x-extra-{index}": "1" for index in range(MAX_HEADERS + 10)}
    response = httpx.get(f"{served.url}/healthz", headers=headers, timeout=10)
    assert response.status_code == 431, response.text
    assert "VIDEOQA_HTTP_MAX_HEADERS" in response.json()["detail"]
    fine = httpx.get(f"{served.url}/healthz", headers=dict(list(headers.items())[:10]), timeout=10)
    assert fine.status_code == 200
    assert counted(before, request_counts(served), 431) == 1


def test_a_slow_header_times_out(served: Served) -> None:
    before = request_counts(served)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        raw = trickle(sock, b"X-Slow: 1\r\n", HEADER_TIMEOUT + 10)  # a header line every 0.25 s
    elapsed = time.monotonic() - started
    assert status_of(raw) == 408, raw[:300]
    assert b"VIDEOQA_HTTP_HEADER_TIMEOUT" in raw
    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + 3, elapsed
    assert counted(before, request_counts(served), 408) == 1


def test_an_idle_connection_is_closed(served: Served) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        raw = read_response(sock, timeout=HEADER_TIMEOUT + 6)
    assert raw == b"" and time.monotonic() - started < HEADER_TIMEOUT + 5


def test_a_slow_body_times_out(served: Served) -> None:
    before = request_counts(served)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(
            b"POST /ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"
        )
        raw = trickle(sock, b" ", BODY_TIMEOUT + 10)  # a byte every 0.25 s: never done in time
    elapsed = time.monotonic() - started
    assert status_of(raw) == 408, raw[:300]
    assert b"VIDEOQA_HTTP_BODY_TIMEOUT" in raw
    assert BODY_TIMEOUT * 0.9 <= elapsed < BODY_TIMEOUT + 3, elapsed
    assert counted(before, request_counts(served), 408) == 1


def test_a_malformed_request_line_is_counted(served: Served) -> None:
    before = request_counts(served)
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\x00\r\n\r\n")
        raw = read_response(sock, timeout=5)
    assert status_of(raw) == 400, raw[:300]
    assert counted(before, request_counts(served), 400) == 1


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.reliability
def test_a_huge_header_neither_holds_memory_nor_stalls_other_requests(served: Served) -> None:
    """While one client streams a 128 MB header, /healthz answers as fast as when idle."""

    def latencies(count: int) -> list[float]:
        with httpx.Client(timeout=30) as client:
            measured = []
            for _ in range(count):
                started = time.perf_counter()
                assert client.get(f"{served.url}/healthz").status_code == 200
                measured.append(time.perf_counter() - started)
                time.sleep(0.01)
            return measured

    idle = statistics.median(latencies(50))
    rss_before = _rss_kib(served.process.pid)
    sent = [0]
    done = threading.Event()

    def flood() -> None:
        with (
            socket.create_connection(("127.0.0.1", served.port), timeout=30) as sock,
            contextlib.suppress(OSError),
        ):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ")
            chunk = b"a" * (1024 * 1024)
            while sent[0] < 128 * 1024 * 1024 and not done.is_set():
                sock.sendall(chunk)
                sent[0] += len(chunk)
            done.wait(5)  # hold the connection open, header unfinished

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    busy = statistics.median(latencies(100))
    rss_during = _rss_kib(served.process.pid)
    done.set()
    flooder.join(timeout=60)
    print(
        f"/healthz p50 idle {idle * 1000:.1f} ms, during a 128 MB header {busy * 1000:.1f} ms; "
        f"sent {sent[0] / 1e6:.1f} MB; RSS {rss_before} -> {rss_during} KiB"
    )
    assert sent[0] < 16 * 1024 * 1024, "the server kept reading a header it can never accept"
    assert busy < max(0.05, idle * 5), (idle, busy)
    assert rss_during - rss_before < 32 * 1024, (rss_before, rss_during)


def test_the_limits_are_settings_shown_by_check_config() -> None:
    from videoqa_pipeline.settings import Settings

    shown = Settings.from_env({}).describe()
    for name in (
        "VIDEOQA_HTTP_MAX_HEADER_BYTES",
        "VIDEOQA_HTTP_MAX_HEADERS",
        "VIDEOQA_HTTP_HEADER_TIMEOUT",
        "VIDEOQA_HTTP_BODY_TIMEOUT",
        "VIDEOQA_HTTP_MAX_BODY_BYTES",
    ):
        assert name in shown, name
    broken = Settings.from_env(
        {"VIDEOQA_HTTP_MAX_HEADERS": "0", "VIDEOQA_HTTP_HEADER_TIMEOUT": "-1"}
    ).problems()
    assert any("VIDEOQA_HTTP_MAX_HEADERS" in problem for problem in broken), broken
    assert any("VIDEOQA_HTTP_HEADER_TIMEOUT" in problem for problem in broken), broken
    assert json.dumps(shown)

"""Load benchmark of the signed webhook intake on loopback, not part of the test suite.

Run from the repository root: ``python -m benchmarks.bench_service [--requests 2000] [--clients 20]``

Starts ``videoqa serve`` as its own process (real uvicorn, embedded PostgreSQL in a temporary
``VIDEOQA_HOME``), then sends ``--requests`` signed webhooks from ``--clients`` concurrent
clients; one request in ``--replay-every`` re-sends an earlier webhook ID (a sender's retry).
It checks that no answer is a 5xx and that every accepted webhook ID is exactly one ledger row,
and prints latency percentiles and requests/s next to two baselines measured in the same run:

* ``GET /healthz`` with the same clients: the HTTP floor (no signature, no database);
* ``ledger.submit_job`` called directly from as many threads: the database floor.

Bounded in count and in time (``--max-seconds`` per phase). Talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from videoqa_pipeline.service.webhooks import sign_headers
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.embedded import embedded_database_url, release_embedded_database

SECRET = "whsec_" + "YmVuY2htYXJrLXNlY3JldC1mb3ItdGhlLXdlYmhvb2stbG9hZC10ZXN0"


@dataclass
class Phase:
    """Latencies and status codes of one load phase."""

    name: str
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def record(self, status: int, seconds: float) -> None:
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else float("nan")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_service(url: str, home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "VIDEOQA_HOME": str(home),
        "JOB_SOURCE_TYPE": "postgres,webhook",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_PORT": str(port),
        "WORKER_DEV_HTTP": "true",
        "WORKER_HTTP_PORT": str(port),
        "POSTGRES_POOL_SIZE": "10",
        "LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "videoqa_pipeline.cli", "serve", "--host", "127.0.0.1", "--no-callbacks"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"videoqa serve exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("videoqa serve did not become ready within 60 s")


async def _load(
    base_url: str, requests: list[tuple[str, str, bytes | None]], clients: int, max_seconds: float, name: str
) -> Phase:
    """Send ``(method, webhook_id, body)`` requests from ``clients`` workers; sign each just before sending."""
    phase = Phase(name)
    queue: asyncio.Queue[tuple[str, str, bytes | None]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            method, webhook_id, body = queue.get_nowait()
            started = time.perf_counter()
            if method == "POST" and body is not None:
                headers = {**sign_headers(SECRET, webhook_id, body), "content-type": "application/json"}
                response = await client.post("/webhook/jobs", content=body, headers=headers)
            else:
                response = await client.get("/healthz")
            phase.record(response.status_code, time.perf_counter() - started)

    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(client) for _ in range(clients))), max_seconds)
        phase.seconds = time.perf_counter() - started
    return phase


def _direct_submits(db: Database, count: int, threads: int) -> Phase:
    phase = Phase("ledger.submit_job direct")

    def one(index: int) -> None:
        started = time.perf_counter()
        ledger.submit_job(
            db,
            ledger.JobRequest(
                source_uri=f"s3://bench/direct-{index}.mp4", source_kind="api", external_id=f"direct-{index}"
            ),
            strict=True,
        )
        phase.record(200, time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one, range(count)))
    phase.seconds = time.perf_counter() - started
    return phase


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--replay-every", type=int, default=10, help="every Nth request re-sends an earlier ID"
    )
    parser.add_argument("--max-seconds", type=float, default=300.0, help="time bound per phase")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="videoqa-bench-service-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        admin_url = embedded_database_url(home)
        import psycopg

        name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        # A postgresql:// URL (what DATABASE_URL must be), pointing at the new database.
        url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        db = Database(DatabaseSettings(url=url, home=home, pool_size=args.clients, timeout_seconds=30))
        db.ensure_schema()
        port = _free_port()
        process = _start_service(url, home, port)
        base_url = f"http://127.0.0.1:{port}"

        # The same message shape a producer sends; IDs unique except the planned replays.
        plan: list[tuple[str, str, bytes | None]] = []
        unique_ids: list[str] = []
        for index in range(args.requests):
            if args.replay_every and index % args.replay_every == args.replay_every - 1 and unique_ids:
                webhook_id = unique_ids[index % len(unique_ids)]
                body = json.dumps({"source_uri": f"s3://bench/{webhook_id}.mp4"}).encode()
            else:
                webhook_id = f"evt-{index:06d}"
                unique_ids.append(webhook_id)
                body = json.dumps(
                    {"source_uri": f"s3://bench/{webhook_id}.mp4", "options": {"max_frames_per_video": 10}}
                ).encode()
            plan.append(("POST", webhook_id, body))

        warmup = [("GET", "", None)] * 100
        asyncio.run(_load(base_url, warmup, args.clients, args.max_seconds, "warm-up"))
        health = asyncio.run(
            _load(
                base_url, [("GET", "", None)] * args.requests, args.clients, args.max_seconds, "GET /healthz"
            )
        )
        webhooks = asyncio.run(_load(base_url, plan, args.clients, args.max_seconds, "POST /webhook/jobs"))
        direct = _direct_submits(db, args.requests, args.clients)

        with db.connection() as conn:
            row = conn.execute(
                "SELECT count(*), count(DISTINCT external_id) FROM videoqa_jobs WHERE source_kind = 'webhook'"
            ).fetchone()
        rows, distinct = (int(row[0]), int(row[1])) if row else (0, 0)
        server_errors = sum(count for status, count in webhooks.statuses.items() if status >= 500)
        accepted = webhooks.statuses.get(202, 0)

        print(
            f"\nSigned webhook intake: {args.requests} requests, {args.clients} concurrent clients, loopback\n"
        )
        print(f"{'phase':<28}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio req/s':>13}")
        for phase in (health, direct, webhooks):
            print(
                f"{phase.name:<28}{len(phase.latencies):>9}{phase.rate:>9.0f}{phase.percentile(0.5) * 1000:>9.1f}"
                f"{phase.percentile(0.99) * 1000:>9.1f}{phase.rate / webhooks.rate:>13.2f}"
            )
        print(
            f"\nstatus codes: {dict(sorted(webhooks.statuses.items()))}; 5xx: {server_errors}; "
            f"unique webhook IDs sent: {len(unique_ids)}; accepted (202): {accepted}; "
            f"ledger rows: {rows} ({distinct} distinct IDs)"
        )
        ok = server_errors == 0 and rows == distinct == accepted == len(unique_ids)
        print("exactly one ledger row per accepted webhook, no 5xx:", "yes" if ok else "NO")
        db.close()
        return 0 if ok else 1
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        release_embedded_database(home)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

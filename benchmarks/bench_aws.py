"""AWS throughput benchmark on a local S3/SQS protocol server (moto), not part of the test suite.

Run from the repository root: ``python -m benchmarks.bench_aws [--size-mb 256] [--messages 300]``

Prints two tables, each with a baseline measured in the same run:

* S3 transfer: :meth:`S3BlobStore.put_file` / :meth:`S3BlobStore.local_path` against boto3's
  default managed transfer (what ``aws s3 cp`` does) of the same file, with MB/s, the ratio to the
  baseline and the resident-memory growth of each (sampled every 10 ms in a fresh process per transfer; moto runs in its own process);
* SQS intake: :func:`drain_queue` (receive, ledger write + commit per message, batch delete)
  against a bare receive + batch delete of the same number of messages, in messages/s.

Everything talks to 127.0.0.1 only. moto keeps objects in memory and is much slower than real S3,
so absolute numbers say little; the ratios compare the two clients on the same server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videoqa_pipeline import aws
from videoqa_pipeline.defs.sensors.sqs_sensor import drain_queue
from videoqa_pipeline.storage.database import DatabaseSettings, get_database
from videoqa_pipeline.storage.embedded import release_embedded_database
from videoqa_pipeline.storage.s3_blobs import S3BlobStore

MIB = 1 << 20


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


class _RssPeak:
    """Samples this process's resident memory every 10 ms; ``growth_mb`` is peak minus start."""

    def __enter__(self) -> _RssPeak:
        self.start = _rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())

    @property
    def growth_mb(self) -> float:
        return self.peak - self.start


def _timed(action: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds and the largest RSS growth over ``repeats`` runs."""
    seconds, growth = [], []
    for _ in range(repeats):
        with _RssPeak() as peak:
            started = time.perf_counter()
            action()
            seconds.append(time.perf_counter() - started)
        growth.append(peak.growth_mb)
    return statistics.median(seconds), max(growth)


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto in its own process: it keeps objects in memory, which must not count as ours."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit("moto server did not start (pip install 'moto[server]')") from None
            time.sleep(0.2)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
    )
    return server, endpoint


def _transfer(operation: str, path: Path, size_mb: int) -> None:
    """One transfer, in a fresh process (``--child``), so each gets its own memory measurement."""
    config = aws.AwsConfig.from_env()
    client = aws.client("s3", config)
    store = S3BlobStore("bench", "video-processing/", config, client=client)
    if operation == "baseline-upload":
        client.upload_file(str(path), "bench", "baseline/video.bin")
    elif operation == "store-upload":
        store.put_file("vid/source/video.bin", path)
    elif operation == "baseline-download":
        client.download_file("bench", "baseline/video.bin", str(path))
        path.unlink()
    elif operation == "store-download":
        with store.local_path("vid/source/video.bin") as local:
            assert local.stat().st_size == size_mb * MIB
    else:
        raise SystemExit(f"unknown operation {operation}")


def _child(operation: str, path: Path, size_mb: int, repeats: int) -> tuple[float, float]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_aws",
            "--child",
            operation,
            str(path),
            str(size_mb),
            str(repeats),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, growth = json.loads(result.stdout.strip().splitlines()[-1])
    return float(seconds), float(growth)


def bench_s3(config: aws.AwsConfig, size_mb: int, repeats: int, workdir: Path) -> list[dict[str, Any]]:
    aws.client("s3", config).create_bucket(Bucket="bench")
    source = workdir / "video.bin"
    block = os.urandom(MIB)
    with source.open("wb") as handle:
        for index in range(size_mb):
            handle.write(index.to_bytes(8, "little") + block[8:])
    target = workdir / "downloaded.bin"
    measurements = {
        "upload: boto3 default (aws s3 cp)": _child("baseline-upload", source, size_mb, repeats),
        "upload: S3BlobStore.put_file": _child("store-upload", source, size_mb, repeats),
        "download: boto3 default (aws s3 cp)": _child("baseline-download", target, size_mb, repeats),
        "download: S3BlobStore.local_path": _child("store-download", target, size_mb, repeats),
    }
    rows = []
    for name, (seconds, growth) in measurements.items():
        direction = name.split(":")[0]
        baseline = measurements[f"{direction}: boto3 default (aws s3 cp)"][0]
        rows.append(
            {
                "measurement": name,
                "size_mb": size_mb,
                "seconds": round(seconds, 2),
                "mb_per_s": round(size_mb / seconds, 1),
                "vs_baseline": round(baseline / seconds, 2),
                "rss_growth_mb": round(growth, 1),
            }
        )
    return rows


def bench_sqs(config: aws.AwsConfig, messages: int, workdir: Path) -> list[dict[str, Any]]:
    sqs = aws.client("sqs", config)
    home = Path(tempfile.mkdtemp(prefix="videoqa-bench-aws-home-"))
    database_settings = DatabaseSettings(url=None, home=home, pool_size=5, timeout_seconds=10.0)
    database = get_database(database_settings)
    database.ensure_schema()

    def fill(queue_url: str) -> None:
        for start in range(0, messages, 10):
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps({"source_uri": f"s3://bench/uploads/v{start + i}.mp4"}),
                }
                for i in range(min(10, messages - start))
            ]
            sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)

    def bare_drain(queue_url: str) -> int:
        received = 0
        while True:
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
                "Messages", []
            )
            if not batch:
                return received
            received += len(batch)
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )

    def ledger_drain(queue_url: str) -> int:
        received = 0
        while True:
            report = drain_queue(
                sqs, queue_url, database, max_messages=10, wait_seconds=0, budget_seconds=600
            )
            received += report.received
            if report.received == 0:
                return received

    rows = []
    try:
        results: dict[str, float] = {}
        for name, drain in (
            ("bare receive + delete (baseline)", bare_drain),
            ("drain_queue into ledger", ledger_drain),
        ):
            queue_url = sqs.create_queue(QueueName=f"bench-{len(results)}-{time.time_ns()}")["QueueUrl"]
            fill(queue_url)
            started = time.perf_counter()
            received = drain(queue_url)
            seconds = time.perf_counter() - started
            results[name] = received / seconds
            rows.append({"measurement": name, "messages": received, "seconds": round(seconds, 2)})
        baseline = results["bare receive + delete (baseline)"]
        for row in rows:
            rate = results[row["measurement"]]
            row["messages_per_s"] = round(rate, 1)
            row["vs_baseline"] = round(rate / baseline, 2)
    finally:
        database.close()
        release_embedded_database(home)
        shutil.rmtree(home, ignore_errors=True)
    return rows


def _print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    columns = list(rows[0])
    widths = [max(len(str(c)), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256, help="size of the transferred file")
    parser.add_argument("--repeats", type=int, default=2, help="runs per transfer (median reported)")
    parser.add_argument("--messages", type=int, default=300, help="SQS messages per drain")
    parser.add_argument(
        "--child", nargs=4, metavar=("OPERATION", "PATH", "SIZE_MB", "REPEATS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        operation, path, size_mb, repeats = args.child
        print(json.dumps(_timed(lambda: _transfer(operation, Path(path), int(size_mb)), int(repeats))))
        return
    server, endpoint = _start_moto()
    config = aws.AwsConfig(region="us-east-1", endpoint_url=endpoint)
    try:
        with tempfile.TemporaryDirectory(prefix="videoqa-bench-aws-") as tmp:
            _print_table(
                "S3 transfer (moto on 127.0.0.1)", bench_s3(config, args.size_mb, args.repeats, Path(tmp))
            )
            _print_table(
                "SQS intake (moto on 127.0.0.1, embedded PostgreSQL ledger)",
                bench_sqs(config, args.messages, Path(tmp)),
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()

"""A process shaped like Dagster's code server that needs the embedded PostgreSQL.

``dagster dev`` evaluates sensors inside a gRPC server: busy gRPC threads, and the database is
first touched from a request handler. This worker does the same with a real gRPC server (the
health service), so starting the embedded server happens in a process full of gRPC threads.

Usage: ``python -m videoqa_pipeline_tests.reliability._grpc_embedded_user HOME MODE``

* ``hold``: start or join the server from a gRPC handler, print ``{"pid", "url", "answer"}`` as a
  JSON line, wait for a line on stdin, exit normally (the atexit release runs).
* ``once``: the same, then release at once (as a CLI command does) and exit.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from concurrent import futures
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from videoqa_pipeline.storage.embedded import embedded_database_url, release_embedded_database

#: Client threads that keep gRPC calls in flight while the server starts, as the daemon's do.
BUSY_CLIENTS = 3


class _DatabaseHealth(health.HealthServicer):
    """Answers ``Check`` for the service ``videoqa`` by joining the embedded server and querying it."""

    def __init__(self, home: Path) -> None:
        super().__init__()
        self.home = home
        self.url = ""
        self.answer: int | None = None

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> object:
        if request.service == "videoqa":
            try:
                self.url = embedded_database_url(self.home)
                with psycopg.connect(self.url, connect_timeout=60) as conn:
                    row = conn.execute("SELECT 1").fetchone()
            except Exception:
                traceback.print_exc()  # gRPC would only pass on the message
                raise
            self.answer = None if row is None else int(row[0])
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def _busy(port: int, stop: threading.Event) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)


def main(argv: list[str]) -> int:
    home, mode = Path(argv[0]), argv[1]
    servicer = _DatabaseHealth(home)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=BUSY_CLIENTS + 2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    clients = [threading.Thread(target=_busy, args=(port, stop), daemon=True) for _ in range(BUSY_CLIENTS)]
    for client in clients:
        client.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="videoqa"), timeout=180
            )
    finally:  # the server's threads would otherwise keep a failed worker alive
        stop.set()
        for client in clients:
            client.join(30)  # each ends after its call in flight and closes its channel
        server.stop(5).wait(10)
    print(json.dumps({"pid": os.getpid(), "url": servicer.url, "answer": servicer.answer}), flush=True)
    if mode == "hold":
        sys.stdin.readline()
    else:
        release_embedded_database(home)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

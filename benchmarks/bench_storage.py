"""Storage throughput benchmark (not part of the test suite).

Run from the repository root: ``python -m benchmarks.bench_storage [--rows 2000] [--blob-mb 256]``

Prints one table per measurement with a baseline measured in the same run:

* partition writes: :func:`replace_partition` (DELETE + COPY in one transaction) against a naive
  ``executemany`` INSERT of the same rows, for scenes and for 384-d embeddings, on the embedded
  server (pgvector) and, when available, the system PostgreSQL (``real[]``);
* partition reads: :func:`read_partition` (to typed DataFrame, float32 arrays) against a bare
  ``fetchall``;
* blobs: :meth:`LocalBlobStore.put_file` (chunked copy + fsync + rename) against
  ``shutil.copyfile``, with the Python heap peak of each;
* embedded server: cold start (initdb + start) and a warm join from a new process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from videoqa_pipeline.storage.blobs import LocalBlobStore
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline.storage.embedded import release_embedded_database
from videoqa_pipeline.storage.schema import TABLES, TableSpec
from videoqa_pipeline.storage.tables import read_partition, replace_partition
from videoqa_pipeline_tests.storage.conftest import (
    PostgresUnavailable,
    create_scratch_database,
    system_postgres_server,
)


def _best_of(repeats: int, action: Callable[[], object]) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return min(timings)


def _frames(rows: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    scenes = pd.DataFrame(
        {
            "scene_index": np.arange(rows),
            "start_seconds": np.arange(rows) * 2.0,
            "end_seconds": np.arange(rows) * 2.0 + 2.0,
            "start_frame": np.arange(rows) * 50,
            "end_frame": np.arange(rows) * 50 + 50,
        }
    )
    embeddings = pd.DataFrame(
        {
            "item_index": np.arange(rows),
            "kind": ["transcript"] * rows,
            "start_seconds": np.arange(rows) * 2.0,
            "end_seconds": np.arange(rows) * 2.0 + 2.0,
            "text": [f"chunk {number} of a transcript about pipelines" for number in range(rows)],
            "model": ["all-MiniLM-L6-v2"] * rows,
            "dimension": [384] * rows,
            "embedding": list(rng.standard_normal((rows, 384)).astype(np.float32)),
        }
    )
    return {"scenes": scenes, "embeddings": embeddings}


def _naive_insert(db: Database, spec: TableSpec, video_id: str, frame: pd.DataFrame) -> None:
    """Baseline: DELETE + one INSERT per row via executemany, vectors as text literals."""
    columns = ", ".join(spec.column_names)
    placeholders = ", ".join(["%s"] * len(spec.column_names))
    as_vector = db.has_pgvector
    rows = []
    for record in frame.itertuples(index=False):
        values: list[object] = [video_id]
        for value in record:
            if isinstance(value, np.ndarray):
                body = ",".join(map(str, value.tolist()))
                values.append(f"[{body}]" if as_vector else f"{{{body}}}")
            else:
                values.append(value.item() if isinstance(value, np.generic) else value)
        rows.append(values)
    with db.connection() as conn, conn.transaction(), conn.cursor() as cursor:
        cursor.execute(f"DELETE FROM {spec.name} WHERE video_id = %s", (video_id,))
        cursor.executemany(f"INSERT INTO {spec.name} ({columns}) VALUES ({placeholders})", rows)


def _bare_fetch(db: Database, spec: TableSpec, video_id: str) -> None:
    with db.connection() as conn:
        conn.execute(f"SELECT * FROM {spec.name} WHERE video_id = %s", (video_id,)).fetchall()


def bench_tables(rows: int, home: Path) -> None:
    backends: list[tuple[str, Database]] = [
        ("embedded/pgvector", Database(DatabaseSettings(url=None, home=home)))
    ]
    system = system_postgres_server()
    try:
        system_url: str | None = create_scratch_database(system.__enter__())
        backends.append(("system/real[]", Database(DatabaseSettings(url=system_url, home=home))))
    except PostgresUnavailable as reason:
        print(f"(system PostgreSQL skipped: {reason})")
        system_url = None
    frames = _frames(rows)
    print(f"\nPartition writes and reads, {rows} rows, best of 3 (seconds; ratio = baseline / ours)")
    header = f"{'backend':18} {'table':11} {'replace':>9} {'naive ins':>9} {'ratio':>6} {'read df':>9} {'fetchall':>9}"
    print(header)
    print("-" * len(header))
    try:
        for name, db in backends:
            db.ensure_schema()
            for asset, frame in frames.items():
                spec = TABLES[asset]
                ours = _best_of(3, lambda: replace_partition(db, spec, "bench", frame))  # noqa: B023
                naive = _best_of(3, lambda: _naive_insert(db, spec, "bench-naive", frame))  # noqa: B023
                read = _best_of(3, lambda: read_partition(db, spec, "bench"))  # noqa: B023
                fetch = _best_of(3, lambda: _bare_fetch(db, spec, "bench"))  # noqa: B023
                print(
                    f"{name:18} {asset:11} {ours:9.3f} {naive:9.3f} {naive / ours:6.1f} {read:9.3f} {fetch:9.3f}"
                )
            db.close()
    finally:
        if system_url is not None:
            system.__exit__(None, None, None)


def bench_blobs(megabytes: int, workdir: Path) -> None:
    source = workdir / "source.bin"
    with open(source, "wb") as handle:
        for _ in range(megabytes):
            handle.write(os.urandom(1024 * 1024))
    store = LocalBlobStore(workdir / "blobs")

    def measured(action: Callable[[], object]) -> tuple[float, float]:
        tracemalloc.start()
        started = time.perf_counter()
        action()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return elapsed, peak / 2**20

    ours, ours_peak = measured(lambda: store.put_file("v/source/original.bin", source))
    plain, plain_peak = measured(lambda: shutil.copyfile(source, workdir / "copy.bin"))
    slurp, slurp_peak = measured(lambda: (workdir / "slurp.bin").write_bytes(source.read_bytes()))
    print(f"\nBlob put_file, {megabytes} MiB file (seconds, MB/s, Python heap peak MiB)")
    print(f"{'method':28} {'seconds':>8} {'MB/s':>8} {'peak MiB':>9}")
    for name, seconds, peak in [
        ("LocalBlobStore.put_file", ours, ours_peak),
        ("shutil.copyfile (baseline)", plain, plain_peak),
        ("read_bytes+write (naive)", slurp, slurp_peak),
    ]:
        print(f"{name:28} {seconds:8.3f} {megabytes / seconds:8.0f} {peak:9.1f}")
    print(f"ratio put_file / copyfile time: {ours / plain:.2f} (put_file adds fsync + atomic rename)")


def bench_embedded(workdir: Path) -> None:
    home = workdir / "cold-home"
    repo_root = Path(__file__).resolve().parents[2]
    script = (
        "import json,sys,time; from pathlib import Path;"
        "t=time.perf_counter(); from videoqa_pipeline.storage.embedded import embedded_database_url;"
        "i=time.perf_counter(); embedded_database_url(Path(sys.argv[1]));"
        "print(json.dumps({'import': i-t, 'join': time.perf_counter()-i}))"
    )
    env = {**os.environ, "PYTHONPATH": str(repo_root)}

    def run() -> dict[str, float]:
        output = subprocess.run(
            [sys.executable, "-c", script, str(home)], capture_output=True, text=True, env=env, check=True
        )
        return dict(json.loads(output.stdout.strip().splitlines()[-1]))

    cold = run()  # initdb + start + create database/extension, then stop at exit
    restart = run()  # start an existing cluster, then stop at exit
    from videoqa_pipeline.storage.embedded import embedded_database_url

    embedded_database_url(home)  # keep the server up so the next process only joins
    warm = run()
    release_embedded_database(home)
    print("\nEmbedded server, new process each (seconds)")
    print(f"{'case':34} {'join':>7}")
    print(f"{'cold: initdb + start':34} {cold['join']:7.2f}")
    print(f"{'restart existing data':34} {restart['join']:7.2f}")
    print(f"{'join a running server (baseline)':34} {warm['join']:7.2f}")
    print(f"ratio cold / warm: {cold['join'] / warm['join']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2000, help="rows per partition write")
    parser.add_argument("--blob-mb", type=int, default=256, help="size of the blob copied")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="videoqa-bench-"))
    try:
        bench_tables(args.rows, workdir / "home")
        release_embedded_database(workdir / "home")
        bench_blobs(args.blob_mb, workdir)
        bench_embedded(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

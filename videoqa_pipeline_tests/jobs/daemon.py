"""Helpers for tests that run the real daemon: ``dagster dev`` with a private home, jobs inserted
from a separate connection, bounded waits on the ledger."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg

from videoqa_pipeline.run_tags import JOB_ID_TAG
from videoqa_pipeline.storage.embedded import embedded_database_url
from videoqa_pipeline_tests.jobs.conftest import QUIET
from videoqa_pipeline_tests.pipeline.dagster_dev_server import DagsterDev, start_dagster_dev

FINAL = ("succeeded", "failed", "cancelled")


def start_worker(dagster_home: Path, videoqa_home: Path, log_name: str, **extra: str) -> DagsterDev:
    """``dagster dev`` on the embedded database, models off, polling every second."""
    env = {**QUIET, "WORKER_POLL_MS": "1000", **extra}
    return start_dagster_dev(dagster_home, videoqa_home, dagster_home / log_name, extra_env=env)


@contextmanager
def producer(videoqa_home: Path) -> Iterator[psycopg.Connection]:
    """A plain psycopg connection to the worker's database, as an outside producer has."""
    with psycopg.connect(embedded_database_url(videoqa_home), autocommit=True) as conn:
        yield conn


def insert_jobs(conn: psycopg.Connection, sources: Iterable[str]) -> list[int]:
    """The producers' SQL contract: one plain INSERT per job."""
    ids = []
    for source in sources:
        row = conn.execute(
            "INSERT INTO videoqa_jobs (source_uri) VALUES (%s) RETURNING id", (source,)
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


def wait_for_table(videoqa_home: Path, timeout: float = 120.0) -> None:
    """Wait until the worker has migrated the schema (its first sensor tick does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with producer(videoqa_home) as conn:
            row = conn.execute("SELECT to_regclass('videoqa_jobs')").fetchone()
            if row is not None and row[0] is not None:
                return
        time.sleep(0.5)
    raise TimeoutError(f"videoqa_jobs was not created within {timeout:.0f} s")


def statuses(conn: psycopg.Connection, ids: list[int]) -> dict[int, tuple[str, str | None, str | None]]:
    rows = conn.execute(
        "SELECT id, status, error, failed_step FROM videoqa_jobs WHERE id = ANY(%s)", (ids,)
    ).fetchall()
    return {int(r[0]): (str(r[1]), r[2], r[3]) for r in rows}


def wait_until_final(
    conn: psycopg.Connection, ids: list[int], timeout: float, server: DagsterDev
) -> dict[int, tuple[str, str | None, str | None]]:
    """Poll the ledger until every job is final; fail with the states and the server log if not."""
    deadline = time.monotonic() + timeout
    current: dict[int, tuple[str, str | None, str | None]] = {}
    while time.monotonic() < deadline:
        current = statuses(conn, ids)
        if len(current) == len(ids) and all(state[0] in FINAL for state in current.values()):
            return current
        time.sleep(1.0)
    counts = Counter(state[0] for state in current.values())
    raise AssertionError(f"jobs not final after {timeout:.0f} s: {dict(counts)}\n{server.log_tail(6000)}")


def runs_per_job(instance: dg.DagsterInstance) -> dict[int, list[dg.DagsterRun]]:
    """Every run the instance holds that serves a job, grouped by job ID."""
    grouped: dict[int, list[dg.DagsterRun]] = {}
    for run in instance.get_runs():
        job_id = run.tags.get(JOB_ID_TAG)
        if job_id:
            grouped.setdefault(int(job_id), []).append(run)
    return grouped


def wait_for_step_seconds(videoqa_home: Path, ids: list[int], timeout: float) -> dict[int, dict[str, float]]:
    """Wait until every job in ``ids`` has its per-step durations; return them."""
    deadline = time.monotonic() + timeout
    found: dict[int, dict[str, float]] = {}
    while time.monotonic() < deadline:
        with producer(videoqa_home) as conn:
            rows = conn.execute(
                "SELECT id, step_seconds FROM videoqa_jobs WHERE id = ANY(%s) AND step_seconds IS NOT NULL",
                (ids,),
            ).fetchall()
        found = {int(row[0]): dict(row[1]) for row in rows}
        if len(found) == len(ids):
            return found
        time.sleep(1.0)
    raise AssertionError(f"step durations missing after {timeout:.0f} s: only {sorted(found)} of {ids}")

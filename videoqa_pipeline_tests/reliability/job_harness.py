"""Jobs through the path a user sees, in this process: ledger row → job sensor tick → Dagster run.

:class:`JobHarness` drives the real pieces without a daemon: the job sensor's own tick function
claims pending rows (with the deployment's source policy) and builds the run requests; each
request is executed in process with the real job definition, its tags and run config, so the run
marks its job running and its hooks write the outcome. A job that failed for a transient reason
goes back to pending, and the next tick starts its next attempt, exactly as under ``dagster dev``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from videoqa_pipeline.definitions import VIDEO_PIPELINE_JOB, build_definitions
from videoqa_pipeline.defs.partitions import videos_partitions
from videoqa_pipeline.defs.sensors.job_sensor import downstream_selections, evaluate_job_tick
from videoqa_pipeline.run_tags import JOB_ID_TAG
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.blobs import LocalBlobStore
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline_tests.reliability.fault_support import database_rows


@contextlib.contextmanager
def process_env(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` for the block, restoring every variable afterwards."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class JobOutcome:
    """A job once it reached a final state, and every run it took.

    Attributes:
        job: The ledger row at the end.
        runs: One in-process run result per attempt, in order.
        step_retries: ``STEP_UP_FOR_RETRY`` events per run (retries inside each run).
    """

    job: ledger.Job
    runs: list[dg.ExecuteInProcessResult] = field(default_factory=list)
    step_retries: list[int] = field(default_factory=list)

    @property
    def step_attempts(self) -> int:
        """How many times the failing step ran, over all runs (1 = once, never retried)."""
        return len(self.runs) + sum(self.step_retries)


class JobHarness:
    """The ledger, the job sensor's tick and in-process runs of the real pipeline, for one database.

    Args:
        env: The deployment's environment. Settings are parsed from it, and runs execute with it
            in ``os.environ``, as a run worker has it (secrets such as ``DATABASE_URL`` reach
            resources as ``EnvVar`` s, never through run config; the source fetch reads its policy).
        database: The ledger's database (the one ``DATABASE_URL`` names).
        instance: The Dagster instance the runs and partitions are recorded in.
    """

    def __init__(self, env: Mapping[str, str], database: Database, instance: dg.DagsterInstance) -> None:
        self.env = dict(env)
        settings = Settings.from_env(self.env).validate()
        self.settings = settings
        self.database = database
        self.instance = instance
        self.definitions = build_definitions(settings)
        self.downstream = downstream_selections()
        self.job_def = self.definitions.resolve_job_def(VIDEO_PIPELINE_JOB)
        self.blob_store = LocalBlobStore(settings.blob_root)

    def submit(self, source_uri: str, **fields: Any) -> int:
        """Add a job (``source_kind`` defaults to ``postgres``, a producer's INSERT); return its ID."""
        fields.setdefault("source_kind", "postgres")
        request = ledger.JobRequest(source_uri, **fields)
        return ledger.submit_job(self.database, request, policy=self.settings.source_policy).job_id

    def tick(self) -> list[dg.RunRequest]:
        """One job sensor tick; the partitions it asks for are added to the instance."""
        context = dg.build_sensor_context(instance=self.instance)
        result = evaluate_job_tick(context, self.database, self.settings, self.downstream)
        if isinstance(result, dg.SkipReason):
            return []
        for partitions in result.dynamic_partitions_requests or []:
            if isinstance(partitions, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(
                    videos_partitions.name or "videos", list(partitions.partition_keys)
                )
        return list(result.run_requests or [])

    def execute(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """Run one request as the daemon would launch it (same tags, config, selection)."""
        with process_env(self.env):
            return self.job_def.execute_in_process(
                partition_key=request.partition_key,
                run_config=request.run_config,
                tags=request.tags,
                instance=self.instance,
                raise_on_error=False,
                asset_selection=request.asset_selection,
            )

    def run_job(self, job_id: int, *, max_ticks: int = 10) -> JobOutcome:
        """Tick and run until job ``job_id`` is final (runs of other pending jobs happen too).

        Raises:
            AssertionError: the job is not final after ``max_ticks`` ticks.
        """
        outcome = JobOutcome(job=ledger.get_job(self.database, job_id))
        for _ in range(max_ticks):
            if outcome.job.status in ledger.FINAL_STATUSES:
                return outcome
            for request in self.tick():
                result = self.execute(request)
                if request.tags[JOB_ID_TAG] == str(job_id):
                    outcome.runs.append(result)
                    outcome.step_retries.append(self.step_retries(result.run_id))
            outcome.job = ledger.get_job(self.database, job_id)
        if outcome.job.status in ledger.FINAL_STATUSES:
            return outcome
        raise AssertionError(f"job {job_id} is still {outcome.job.status} after {max_ticks} ticks")

    def step_retries(self, run_id: str) -> int:
        """``STEP_UP_FOR_RETRY`` events of a run: how often a step was retried inside it."""
        return sum(
            1
            for entry in self.instance.all_logs(run_id)
            if entry.dagster_event is not None
            and entry.dagster_event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
        )

    def rows(self, video_id: str) -> dict[str, int]:
        """Rows of every pipeline table for ``video_id`` (asset name -> count)."""
        return database_rows(self.database, video_id)

    def blob_keys(self, video_id: str) -> list[str]:
        """Keys the blob store holds for ``video_id``."""
        return sorted(self.blob_store.list_keys(f"{video_id}/"))

    def table_names(self) -> set[str]:
        """Every table of the public schema: proof that nothing was dropped."""
        with self.database.connection() as conn:
            rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        return {str(row[0]) for row in rows}

    def count(self, table: str) -> int:
        """Rows of ``table`` (a name from :meth:`table_names`)."""
        with self.database.connection() as conn:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        return int(row[0]) if row else 0

    def connect(self) -> psycopg.Connection:
        """A plain connection to the ledger's database, as ``psql`` would have."""
        assert self.settings.database_url is not None
        return psycopg.connect(self.settings.database_url, autocommit=True)


def harness_env(home: Path, database_url: str, **overrides: str) -> dict[str, str]:
    """Environment of a harness deployment: models off (these tests are about jobs), two attempts,
    one-second fetch timeout, blobs and inbox under ``home``."""
    return {
        "VIDEOQA_HOME": str(home),
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "ENABLE_TRANSCRIPTION": "false",
        "ENABLE_VISION_ANALYSIS": "false",
        "ENABLE_EMBEDDINGS": "false",
        "WORKER_MAX_ATTEMPTS": "2",
        "VIDEOQA_FETCH_TIMEOUT": "1",
        **overrides,
    }

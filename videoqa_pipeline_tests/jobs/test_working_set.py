"""The partition working set: old videos leave Dagster, busy ones stay, a new job brings one back.

Real parts: a Dagster instance on PostgreSQL storage (Debian's server), real runs materializing a
partitioned asset of the ``videos`` partitions, and the job ledger on the same server.
"""

# No `from __future__ import annotations`: Dagster reads the asset's context annotation.

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from videoqa_pipeline.defs.partitions import VIDEOS_PARTITIONS_NAME, videos_partitions
from videoqa_pipeline.defs.sensors.job_sensor import downstream_selections, evaluate_job_tick
from videoqa_pipeline.defs.sensors.working_set_sensor import build_working_set_sensor
from videoqa_pipeline.defs.working_set import retire_partitions
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database, DatabaseSettings
from videoqa_pipeline_tests.jobs.conftest import QUIET
from videoqa_pipeline_tests.storage.conftest import create_scratch_database


@dg.asset(partitions_def=videos_partitions)
def transcript(context: dg.AssetExecutionContext) -> None:
    """A stand-in asset of the real partitions: what is measured is Dagster's bookkeeping."""
    context.log.info(f"video {context.partition_key}")


KEYS = [f"video-{number:02d}" for number in range(12)]


def _postgres_instance(conninfo: str) -> Iterator[dg.DagsterInstance]:
    info = psycopg.conninfo.conninfo_to_dict(conninfo)
    password = f":{info['password']}" if info.get("password") else ""
    url = f"postgresql+psycopg2://{info['user']}{password}@{info['host']}:{info['port']}/{info['dbname']}"
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url}}}) as instance:
        yield instance


@pytest.fixture()
def ledger_database(system_admin_url: str, jobs_home: Path) -> Iterator[Database]:
    url = create_scratch_database(system_admin_url)
    database = Database(DatabaseSettings(url=url, home=jobs_home, pool_size=3, timeout_seconds=10))
    database.ensure_schema()
    yield database
    database.close()


@pytest.fixture()
def pg_instance(system_admin_url: str) -> Iterator[dg.DagsterInstance]:
    yield from _postgres_instance(create_scratch_database(system_admin_url))


@pytest.fixture()
def library(pg_instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """Twelve videos, each materialized by one real run, oldest first."""
    for key in KEYS:
        pg_instance.add_dynamic_partitions(VIDEOS_PARTITIONS_NAME, [key])
        assert dg.materialize([transcript], partition_key=key, instance=pg_instance).success
    return pg_instance


def _materialized(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey("transcript")))


def test_retirement_keeps_the_newest_and_the_busy_and_deletes_the_rest(
    library: dg.DagsterInstance, ledger_database: Database
) -> None:
    # video-01 has a job waiting in the ledger; video-02 has a run that has not finished.
    ledger.submit_job(ledger_database, ledger.JobRequest("/videos/one.mp4", video_id="video-01"))
    library.add_run(
        dg.DagsterRun(
            job_name="video_pipeline",
            run_id="a" * 8 + "-0000-0000-0000-" + "0" * 12,
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": "video-02"},
        )
    )
    old_runs = {
        record.dagster_run.tags["dagster/partition"]: record.dagster_run.run_id
        for record in library.get_run_records()
        if record.dagster_run.is_finished
    }

    result = retire_partitions(library, ledger_database, keep=5)

    expected_retired = {"video-00", *KEYS[3:7]}
    assert set(result.retired) == expected_retired
    assert set(result.busy) == {"video-01", "video-02"}
    assert result.runs_deleted == len(expected_retired) and not result.more
    remaining = library.get_dynamic_partitions(VIDEOS_PARTITIONS_NAME)
    assert remaining == ["video-01", "video-02", *KEYS[7:]]  # insertion order kept
    # The retired videos' runs and events are gone from Dagster; the others are untouched.
    for key in expected_retired:
        assert library.get_run_by_id(old_runs[key]) is None
        assert not library.get_records_for_run(old_runs[key]).records
    assert _materialized(library) == {"video-01", "video-02", *KEYS[7:]}
    assert library.get_run_by_id(old_runs["video-11"]) is not None
    assert "retired 5 video partition(s) beyond the newest 5 (5 run(s) deleted)" in result.summary()
    assert "kept 2 with unfinished work" in result.summary()

    # A second pass has nothing left but the busy two.
    again = retire_partitions(library, ledger_database, keep=5)
    assert not again.retired and set(again.busy) == {"video-01", "video-02"}


def test_a_new_job_for_a_retired_video_brings_its_partition_back(
    library: dg.DagsterInstance, ledger_database: Database, jobs_home: Path, tiny_video: Path
) -> None:
    retire_partitions(library, ledger_database, keep=3)
    assert not library.has_dynamic_partition(VIDEOS_PARTITIONS_NAME, "video-00")

    ledger.submit_job(ledger_database, ledger.JobRequest(str(tiny_video), video_id="video-00"))
    settings = Settings.from_env({**QUIET, "VIDEOQA_HOME": str(jobs_home)}).validate()
    context = dg.build_sensor_context(instance=library)
    result = evaluate_job_tick(context, ledger_database, settings, downstream_selections())
    assert isinstance(result, dg.SensorResult)
    assert [request.partition_key for request in result.run_requests or []] == ["video-00"]
    added = [request.partition_keys for request in result.dynamic_partitions_requests or []]
    assert added == [["video-00"]]


def test_the_sensor_retires_and_says_so_and_zero_turns_it_off(
    library: dg.DagsterInstance, ledger_database: Database, jobs_home: Path
) -> None:
    from videoqa_pipeline.defs.resources import DatabaseResource

    url = ledger_database.settings.url
    resource = DatabaseResource(database_url=url, home=str(jobs_home), pool_size=2, timeout_seconds=10)
    context = dg.build_sensor_context(instance=library, resources={"database": resource})

    off = Settings.from_env({**QUIET, "VIDEOQA_PARTITION_WORKING_SET": "0"}).validate()
    skipped = build_working_set_sensor(off)(context)
    assert isinstance(skipped, dg.SkipReason) and "0 keeps every video" in (skipped.skip_message or "")
    assert len(library.get_dynamic_partitions(VIDEOS_PARTITIONS_NAME)) == len(KEYS)

    on = Settings.from_env({**QUIET, "VIDEOQA_PARTITION_WORKING_SET": "10"}).validate()
    context = dg.build_sensor_context(instance=library, resources={"database": resource})
    tick = build_working_set_sensor(on)(context)
    assert isinstance(tick, dg.SkipReason)
    assert tick.skip_message == "retired 2 video partition(s) beyond the newest 10 (2 run(s) deleted)"
    assert library.get_dynamic_partitions(VIDEOS_PARTITIONS_NAME) == KEYS[2:]


def test_keep_must_be_positive(pg_instance: dg.DagsterInstance, ledger_database: Database) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        retire_partitions(pg_instance, ledger_database, keep=0)

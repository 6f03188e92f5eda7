"""Re-processing a chosen set of videos (a collection, a time window, a model change) through the
ledger: `videoqa reprocess` with filters and the UI's `reprocess_videos` job, on the embedded
PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from click.testing import CliRunner

from videoqa_pipeline.cli import main
from videoqa_pipeline.defs.partitions import VIDEOS_PARTITIONS_NAME
from videoqa_pipeline.defs.reprocess_videos import reprocess_videos
from videoqa_pipeline.runner import open_instance
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.reprocess import SelectionError, VideoSelection, count_selected, queue_selected
from videoqa_pipeline_tests.jobs.conftest import LedgerDatabase

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _library(db: LedgerDatabase) -> None:
    """Four finished videos in two collections, one with two jobs, and vectors of two models."""
    rows = [
        ("lecture-1", "s3://archive/lectures/1.mp4", NOW - timedelta(days=30)),
        ("lecture-2", "s3://archive/lectures/2.mp4", NOW - timedelta(days=3)),
        ("ad-1", "s3://archive/ads/1.mp4", NOW - timedelta(days=3)),
        ("ad-2", "s3://archive/ads/2.mp4", NOW - timedelta(days=40)),
        # ad-2 again, later, from a new location: its latest job decides.
        ("ad-2", "s3://archive/lectures/moved.mp4", NOW - timedelta(days=1)),
    ]
    with db.database.connection() as conn:
        for video_id, source, finished in rows:
            conn.execute(
                """INSERT INTO videoqa_jobs (video_id, source_uri, status, finished_at)
                   VALUES (%s, %s, 'succeeded', %s)""",
                (video_id, source, finished),
            )
        for video_id, model in [
            ("lecture-1", "old-model"),
            ("lecture-2", "new-model"),
            ("ad-1", "old-model"),
        ]:
            conn.execute(
                """INSERT INTO videoqa_embeddings (video_id, item_index, kind, start_seconds, end_seconds, text,
                                                   model, dimension, embedding)
                   VALUES (%s, 0, 'transcript', 0, 1, 'words', %s, 3, '[1,0,0]')""",
                (video_id, model),
            )


def _queued(db: LedgerDatabase, batch_prefix: str = "") -> dict[str, ledger.Job]:
    return {
        job.video_id or "": job
        for job in ledger.list_jobs(db.database, limit=100)
        if job.status == ledger.PENDING and (job.external_id or "").startswith(batch_prefix)
    }


def test_filters_select_by_collection_window_and_model_and_a_batch_queues_once(
    embedded_db: LedgerDatabase,
) -> None:
    _library(embedded_db)
    database = embedded_db.database

    def count(**filters: object) -> int:
        return count_selected(database, VideoSelection(**filters))  # type: ignore[arg-type]

    assert count(source_prefix="s3://archive/lectures/") == 3  # ad-2's latest source moved there
    assert count(finished_after=NOW - timedelta(days=7)) == 3
    assert count(finished_after=NOW - timedelta(days=7), finished_before=NOW - timedelta(days=2)) == 2
    assert count(embedding_model_other_than="new-model") == 2
    assert count(video_ids=("ad-1", "nowhere")) == 1
    assert count(every_video=True) == 4
    with database.connection() as conn:  # a video being processed right now is not selected again
        conn.execute(
            "INSERT INTO videoqa_jobs (video_id, source_uri) VALUES ('busy', 's3://archive/ads/3.mp4')"
        )
    assert count(every_video=True) == 4 and count(video_ids=("busy",)) == 0
    # A video processed without a job (`videoqa process`) is known by its registered source.
    ledger.register_source(database, "from-cli", "/videos/lectures/cli.mp4")
    assert count(every_video=True) == 5 and count(source_prefix="/videos/lectures/") == 1
    assert count(video_ids=("from-cli",), finished_after=NOW) == 1  # registered just now
    ledger.register_source(database, "lecture-1", "/elsewhere/1.mp4")  # its latest job's source wins
    assert count(source_prefix="/elsewhere/") == 0

    selection = VideoSelection(source_prefix="s3://archive/lectures/", embedding_model_other_than="new-model")

    def queue() -> tuple[int, int]:
        return queue_selected(database, selection, from_stage="embeddings", batch="b1", source_kind="cli")

    assert queue() == (1, 1)
    assert queue() == (0, 0)  # lecture-1 is pending now: not selected a second time
    with database.connection() as conn:
        conn.execute(
            "UPDATE videoqa_jobs SET status = 'succeeded', finished_at = now() WHERE external_id = 'b1:lecture-1'"
        )
    assert queue() == (1, 0)  # selected again once done, but the batch already holds its job
    jobs = [job for job in ledger.list_jobs(database, limit=100) if (job.external_id or "").startswith("b1:")]
    assert [job.video_id for job in jobs] == ["lecture-1"]
    assert (jobs[0].from_stage, jobs[0].source_uri) == (
        "embeddings",
        "s3://archive/lectures/1.mp4",
    )


@pytest.mark.parametrize(
    "selection, message",
    [
        (VideoSelection(), "name the videos"),
        (VideoSelection(finished_after=NOW, finished_before=NOW), "the window is empty"),
        (VideoSelection(source_prefix="s3://a\0b"), "holds a NUL or a lone surrogate"),
        (VideoSelection(video_ids=("ok", "bad\ud800")), "holds a NUL or a lone surrogate"),
    ],
)
def test_a_selection_that_names_nothing_is_refused(
    embedded_db: LedgerDatabase, selection: VideoSelection, message: str
) -> None:
    with pytest.raises(SelectionError, match=message):
        queue_selected(embedded_db.database, selection, from_stage=None, batch="x", source_kind="cli")


def test_the_cli_counts_queues_and_keeps_the_single_video_form(
    embedded_db: LedgerDatabase, jobs_home: Path
) -> None:
    _library(embedded_db)
    info = psycopg.conninfo.conninfo_to_dict(embedded_db.url)
    url = f"postgresql://{info['user']}@/{info['dbname']}?host={info['host']}&port={info['port']}"
    env = {"VIDEOQA_HOME": str(jobs_home), "DATABASE_URL": url, "DAGSTER_HOME": ""}
    runner = CliRunner()

    def videoqa(*args: str) -> str:
        result = runner.invoke(main, ["reprocess", *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert videoqa("--source-prefix", "s3://archive/ads/", "--dry-run") == "1 video(s) selected\n"
    out = videoqa("--all", "--from", "transcript", "--batch", "nightly")
    assert out == "batch nightly: 4 job(s) pending from transcript on (4 selected)\n"
    assert "0 job(s) pending" in videoqa("--all", "--from", "transcript", "--batch", "nightly")
    assert set(_queued(embedded_db, "nightly:")) == {"lecture-1", "lecture-2", "ad-1", "ad-2"}
    assert "pending: ad-1 from scenes on" in videoqa("ad-1", "--from", "scenes")
    nothing = runner.invoke(main, ["reprocess", "a", "b", "--from", "scenes", "--dry-run"], env=env)
    assert nothing.output == "0 video(s) selected\n"
    empty = runner.invoke(main, ["reprocess"], env=env)
    assert empty.exit_code == 2 and "name the videos" in empty.output

    # One video's history comes from the ledger, with whether Dagster still holds its partition.
    history = runner.invoke(main, ["status", "--video", "ad-2"], env=env, catch_exceptions=False).output
    lines = history.splitlines()
    assert (
        lines[1].split()[1:3] == ["pending", "transcript"]
        and "succeeded" in lines[2]
        and "succeeded" in lines[3]
    )
    assert "partition: not in Dagster" in lines[-1] and "videoqa reprocess ad-2" in lines[-1]
    with open_instance(Settings.from_env(env)) as instance:
        instance.add_dynamic_partitions(VIDEOS_PARTITIONS_NAME, ["ad-2"])
    history = runner.invoke(main, ["status", "--video", "ad-2"], env=env, catch_exceptions=False).output
    assert history.splitlines()[-1] == "partition: in Dagster (runs and lineage in the UI)"
    unknown = runner.invoke(main, ["status", "--video", "never-seen"], env=env)
    assert unknown.exit_code == 1 and "no job for video 'never-seen'" in unknown.output
    ledger.register_source(embedded_db.database, "from-cli", "/videos/cli.mp4")
    registered = runner.invoke(
        main, ["status", "--video", "from-cli"], env=env, catch_exceptions=False
    ).output
    assert (
        registered.splitlines()[0]
        == "no job in the ledger: processed by `videoqa process` (or `demo`) from /videos/cli.mp4"
    )


def test_the_ui_job_queues_a_model_change_once_per_launch(embedded_db: LedgerDatabase) -> None:
    _library(embedded_db)

    def launch(config: dict[str, object]) -> dg.ExecuteInProcessResult:
        return reprocess_videos.execute_in_process(
            run_config={"ops": {"reprocess_videos": {"config": config}}},
            resources={"database": embedded_db.resource()},
            raise_on_error=False,
        )

    result = launch({"from_stage": "embeddings", "finished_after": "2026-05-25"})
    assert result.success
    assert set(_queued(embedded_db, f"{result.run_id}:")) == {"lecture-2", "ad-1", "ad-2"}
    for config, message in [
        ({"from_stage": "nowhere", "every_video": True}, "is not a stage"),
        ({"finished_after": "last tuesday"}, "not an ISO date"),
        ({}, "name the videos"),
    ]:
        failed = launch(config)
        assert not failed.success
        failure = failed.get_step_failure_events()[0].step_failure_data.user_failure_data
        assert failure is not None and message in str(failure.description), config

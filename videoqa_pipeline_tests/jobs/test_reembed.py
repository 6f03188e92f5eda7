"""`reembed_videos`: a set of videos embedded again in one run, with the real offline embedder, the
real tables and the ledger on the embedded PostgreSQL."""

# No `from __future__ import annotations` needed here: nothing Dagster reads is annotated.

import uuid
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg
from click.testing import CliRunner

from videoqa_pipeline.ai import AIConfig, get_embedder
from videoqa_pipeline.cli import main
from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.partitions import VIDEOS_PARTITIONS_NAME
from videoqa_pipeline.defs.reembed_videos import reembed_videos
from videoqa_pipeline.defs.resources import AIResource
from videoqa_pipeline.defs.sensors.run_status import sweep_jobs
from videoqa_pipeline.defs.sensors.scheduler_identity import scheduler_identity
from videoqa_pipeline.settings import Settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.reprocess import VideoSelection, claim_batch
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import read_partition, replace_partition
from videoqa_pipeline_tests.jobs.conftest import LedgerDatabase

VIDEOS = ("lecture-1", "lecture-2", "ad-1")


def _library(db: LedgerDatabase) -> None:
    """Three processed videos with a transcript, scenes and frame texts, and vectors of an old model."""
    for number, video_id in enumerate(VIDEOS):
        with db.database.connection() as conn:
            conn.execute(
                """INSERT INTO videoqa_jobs (video_id, source_uri, status, finished_at)
                   VALUES (%s, %s, 'succeeded', now())""",
                (video_id, f"s3://archive/{video_id}.mp4"),
            )
        text = f"Talk {number}: the lighthouse keeper counts {number + 3} ships in the harbour."
        replace_partition(
            db.database,
            TABLES["transcript"],
            video_id,
            pd.DataFrame(
                [
                    {
                        "segment_index": 0,
                        "start_seconds": 0.0,
                        "end_seconds": 4.0,
                        "text": text,
                        "words": None,
                        "language": "en",
                        "model": "base",
                    }
                ]
            ),
        )
        replace_partition(
            db.database,
            TABLES["scenes"],
            video_id,
            pd.DataFrame(
                [
                    {
                        "scene_index": 0,
                        "start_seconds": 0.0,
                        "end_seconds": 4.0,
                        "start_frame": 0,
                        "end_frame": 99,
                    }
                ]
            ),
        )
        replace_partition(
            db.database,
            TABLES["frame_analyses"],
            video_id,
            pd.DataFrame(
                [
                    {
                        "scene_index": 0,
                        "timestamp_seconds": 1.0,
                        "caption": None,
                        "labels": None,
                        "ocr_text": f"HARBOUR {number}",
                        "model": "ocr",
                    }
                ]
            ),
        )
        with db.database.connection() as conn:
            conn.execute(
                """INSERT INTO videoqa_embeddings (video_id, item_index, kind, start_seconds, end_seconds, text,
                                                   model, dimension, embedding)
                   VALUES (%s, 0, 'transcript', 0, 4, 'old text', 'old-model', 3, '[1,0,0]')""",
                (video_id,),
            )


def _launch(
    db: LedgerDatabase, instance: dg.DagsterInstance, config: dict[str, object]
) -> dg.ExecuteInProcessResult:
    return reembed_videos.execute_in_process(
        run_config={"ops": {"reembed_videos": {"config": config}}},
        resources={"database": db.resource(), "ai": AIResource(), "pipeline_config": PipelineConfig()},
        instance=instance,
        raise_on_error=False,
    )


def test_stale_videos_are_embedded_again_in_one_run_and_recorded_per_video(
    embedded_db: LedgerDatabase, instance: dg.DagsterInstance
) -> None:
    _library(embedded_db)
    instance.add_dynamic_partitions(VIDEOS_PARTITIONS_NAME, ["lecture-2"])  # the only one in the working set
    model = get_embedder(AIConfig.from_env({})).model_name

    result = _launch(
        embedded_db, instance, {"source_prefix": "s3://archive/lecture", "stale_embeddings": True}
    )

    assert result.success
    for video_id in ("lecture-1", "lecture-2"):
        rows = read_partition(embedded_db.database, TABLES["embeddings"], video_id)
        assert set(rows["model"]) == {model} and len(rows) == 2  # a transcript chunk and a frame text
        assert any("lighthouse keeper" in text for text in rows["text"])
        [job] = [j for j in ledger.jobs_for_video(embedded_db.database, video_id) if j.source_kind == "ui"]
        assert (job.status, job.run_id, job.from_stage) == ("succeeded", result.run_id, "embeddings")
        assert job.step_seconds is not None and set(job.step_seconds) == {"embeddings"}
    # The ad was not selected and keeps its old vectors.
    assert set(read_partition(embedded_db.database, TABLES["embeddings"], "ad-1")["model"]) == {"old-model"}
    # One run for the batch, and lineage in the UI only for the video Dagster still holds.
    materialized = instance.get_materialized_partitions(dg.AssetKey("embeddings"))
    assert materialized == {"lecture-2"}
    assert len(instance.get_run_records()) == 1

    # Nothing is stale any more: a second launch selects nothing and changes nothing.
    again = _launch(
        embedded_db, instance, {"source_prefix": "s3://archive/lecture", "stale_embeddings": True}
    )
    assert again.success
    ui_jobs = [j for j in ledger.list_jobs(embedded_db.database, limit=50) if j.source_kind == "ui"]
    assert len(ui_jobs) == 2


def test_a_selection_naming_nothing_fails_without_touching_anything(
    embedded_db: LedgerDatabase, instance: dg.DagsterInstance
) -> None:
    _library(embedded_db)
    result = _launch(embedded_db, instance, {})
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and "name the videos" in str(failure.description)
    # With embeddings switched off the stage would store nothing: refused before anything changes.
    disabled = reembed_videos.execute_in_process(
        run_config={"ops": {"reembed_videos": {"config": {"every_video": True}}}},
        resources={
            "database": embedded_db.resource(),
            "ai": AIResource(),
            "pipeline_config": PipelineConfig(enable_embeddings=False),
        },
        instance=instance,
        raise_on_error=False,
    )
    assert not disabled.success
    refused = disabled.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert refused is not None and "embeddings are disabled" in str(refused.description)
    assert set(read_partition(embedded_db.database, TABLES["embeddings"], "ad-1")["model"]) == {"old-model"}
    assert not [j for j in ledger.list_jobs(embedded_db.database, limit=50) if j.source_kind == "ui"]


def test_videos_of_a_batch_run_that_died_come_back_as_ordinary_pending_jobs(
    embedded_db: LedgerDatabase, instance: dg.DagsterInstance, job_settings: Settings
) -> None:
    _library(embedded_db)
    dead = dg.DagsterRun(
        job_name="reembed_videos", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.FAILURE
    )
    instance.add_run(dead)
    added = claim_batch(
        embedded_db.database,
        VideoSelection(every_video=True),
        batch=dead.run_id,
        stage="embeddings",
        run_id=dead.run_id,
        scheduler_id=scheduler_identity(instance).instance_id,
        source_kind="ui",
    )
    assert added == 3
    assert sweep_jobs(instance, embedded_db.database, job_settings) == 3
    jobs = [j for j in ledger.list_jobs(embedded_db.database, limit=50) if j.source_kind == "ui"]
    assert {(j.status, j.from_stage) for j in jobs} == {("pending", "embeddings")}
    assert all("failed" in (j.error or "") for j in jobs)


def test_a_video_the_embedder_cannot_reach_goes_back_to_pending_and_the_run_says_so(
    embedded_db: LedgerDatabase, instance: dg.DagsterInstance
) -> None:
    _library(embedded_db)
    # An OpenAI-compatible embedding server that is down: nothing listens on the discard port.
    down = AIResource(
        embedding_provider="openai",
        embed_base_url="http://127.0.0.1:9/v1",
        openai_max_retries=0,
        openai_timeout=2.0,
    )
    result = reembed_videos.execute_in_process(
        run_config={"ops": {"reembed_videos": {"config": {"video_ids": ["ad-1"]}}}},
        resources={"database": embedded_db.resource(), "ai": down, "pipeline_config": PipelineConfig()},
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure is not None and "1 back to pending" in str(failure.description)
    [job] = [j for j in ledger.jobs_for_video(embedded_db.database, "ad-1") if j.source_kind == "ui"]
    assert job.status == "pending" and job.from_stage == "embeddings" and "ad-1" in (job.error or "")
    # The old vectors are untouched until a run embeds the video.
    assert set(read_partition(embedded_db.database, TABLES["embeddings"], "ad-1")["model"]) == {"old-model"}


def test_the_cli_reembeds_in_one_run_and_refuses_other_stages(
    embedded_db: LedgerDatabase, jobs_home: Path
) -> None:
    _library(embedded_db)
    info = psycopg.conninfo.conninfo_to_dict(embedded_db.url)
    url = f"postgresql://{info['user']}@/{info['dbname']}?host={info['host']}&port={info['port']}"
    env = {"VIDEOQA_HOME": str(jobs_home), "DATABASE_URL": url, "DAGSTER_HOME": "", "LOG_LEVEL": "WARNING"}
    runner = CliRunner()
    args = ["reprocess", "--stale-embeddings", "--from", "embeddings", "--in-one-run"]
    result = runner.invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "the selected videos are embedded again" in result.stdout
    model = get_embedder(AIConfig.from_env({})).model_name
    for video_id in VIDEOS:
        assert set(read_partition(embedded_db.database, TABLES["embeddings"], video_id)["model"]) == {model}
    wrong = runner.invoke(main, ["reprocess", "--all", "--from", "scenes", "--in-one-run"], env=env)
    assert wrong.exit_code == 2 and "--in-one-run re-embeds" in wrong.output

"""``reprocess_videos``: the UI's way to process a chosen set of videos again.

A Backfill in the UI reaches only the partitions Dagster holds (the working set, see
:mod:`videoqa_pipeline.defs.working_set`); this job reaches every video the ledger knows. It
queues one job per selected video from a stage on, in one statement
(:mod:`videoqa_pipeline.storage.reprocess`), and the job sensor does the rest, adding the
partitions of retired videos back as their runs start. The launch's root run ID names the batch,
so re-executing a launch queues nothing twice.
"""

from datetime import datetime, timezone

import dagster as dg
from pydantic import Field

from videoqa_pipeline.ai import get_embedder
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.run_tags import ROOT_RUN_ID_TAG
from videoqa_pipeline.settings import load_settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.reprocess import SelectionError, VideoSelection, queue_selected

REPROCESS_VIDEOS_JOB = "reprocess_videos"


class VideoSelectionConfig(dg.Config):
    """Which videos (filters combine with AND): run config shared by the jobs that re-process a set."""

    video_ids: list[str] = Field(default_factory=list, description="Only these videos.")
    source_prefix: str | None = Field(
        default=None, description="Only videos whose source starts with this (a folder, a bucket prefix)."
    )
    finished_after: str | None = Field(
        default=None, description="ISO date or time (UTC unless given): latest job finished at or after it."
    )
    finished_before: str | None = Field(
        default=None, description="ISO date or time (UTC unless given): latest job finished before it."
    )
    stale_embeddings: bool = Field(
        default=False,
        description="Only videos with vectors of another embedding model than the configured one.",
    )
    every_video: bool = Field(
        default=False, description="Every video the ledger knows, when no filter is given."
    )


class ReprocessVideosConfig(VideoSelectionConfig):
    """Which videos to process again and from which stage."""

    from_stage: str = Field(
        default=ledger.STAGES[0], description=f"Stage to start from: one of {', '.join(ledger.STAGES)}."
    )


def _moment(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise dg.Failure(
            description=f"{name}={value!r} is not an ISO date or time", allow_retries=False
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def selection_of(config: VideoSelectionConfig, current_model: str | None = None) -> VideoSelection:
    """The ledger selection the config names; a bad time fails without retries.

    ``current_model`` is the embedding model of the run that embeds the videos, when that run is
    this one; otherwise ``stale_embeddings`` compares with the model the settings give.
    """
    model = None
    if config.stale_embeddings:
        settings = load_settings()
        if settings.metadata_storage != "postgres":
            raise dg.Failure(
                description="stale_embeddings reads the embeddings table, which needs METADATA_STORAGE=postgres",
                allow_retries=False,
            )
        model = current_model or get_embedder(settings.ai).model_name
    return VideoSelection(
        video_ids=tuple(config.video_ids),
        source_prefix=config.source_prefix,
        finished_after=_moment(config.finished_after, "finished_after"),
        finished_before=_moment(config.finished_before, "finished_before"),
        embedding_model_other_than=model,
        every_video=config.every_video,
    )


@dg.op(description="Queue one ledger job per selected video; the job sensor then runs them.")
def reprocess_videos_op(
    context: dg.OpExecutionContext, config: ReprocessVideosConfig, database: DatabaseResource
) -> None:
    if config.from_stage not in ledger.STAGES:
        raise dg.Failure(
            description=f"from_stage {config.from_stage!r} is not a stage: use one of {', '.join(ledger.STAGES)}",
            allow_retries=False,
        )
    selection = selection_of(config)
    batch = context.run.tags.get(ROOT_RUN_ID_TAG) or context.run_id
    try:
        selected, queued = queue_selected(
            database.get(), selection, from_stage=config.from_stage, batch=batch, source_kind="ui"
        )
    except SelectionError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    again = f", {selected - queued} already queued by this batch" if selected != queued else ""
    context.log.info(
        f"batch {batch}: {queued} job(s) queued from {config.from_stage} on ({selected} selected{again})"
    )


@dg.job(
    name=REPROCESS_VIDEOS_JOB,
    description="Process a chosen set of videos again, retired partitions included: "
    "ops: {reprocess_videos: {config: {from_stage: embeddings, stale_embeddings: true}}}.",
    tags={"videoqa/kind": "intake"},
)
def reprocess_videos() -> None:
    reprocess_videos_op.alias("reprocess_videos")()

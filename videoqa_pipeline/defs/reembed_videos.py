"""``reembed_videos``: embed a chosen set of videos again in one run, not one run per video.

After a change of ``VIDEOQA_EMBED_MODEL`` every video needs new vectors, and the stage that makes
them takes a fraction of a second per video, while starting a run takes seconds: one run per video
(``reprocess_videos`` from ``embeddings``) would spend nearly all its time starting runs. This job
selects the videos like ``reprocess_videos`` does (retired partitions included) and embeds them
one after another in its own process, with the same stage function and tables as the
``embeddings`` asset.

Every video still has its job in the ledger (:func:`~videoqa_pipeline.storage.reprocess.claim_batch`),
so ``videoqa status --video`` shows it and nothing is lost: a video whose embedding fails for a
transient reason goes back to pending and is then re-embedded by an ordinary run, one that fails
for good keeps its error, and if this run dies, the sweeper hands its unfinished videos back the
same way. A video whose partition is in Dagster's working set gets an ``embeddings``
materialization in this run, so its lineage in the UI stays current.
"""

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

from videoqa_pipeline import steps
from videoqa_pipeline.ai import Embedder, EmbeddingBatch
from videoqa_pipeline.defs.assets.common import AI_POOL, metadata_of, processing_options
from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.partitions import VIDEOS_PARTITIONS_NAME
from videoqa_pipeline.defs.reprocess_videos import VideoSelectionConfig, selection_of
from videoqa_pipeline.defs.resources import AIResource, DatabaseResource
from videoqa_pipeline.defs.sensors.scheduler_identity import scheduler_identity
from videoqa_pipeline.run_tags import ROOT_RUN_ID_TAG
from videoqa_pipeline.settings import Settings, load_settings
from videoqa_pipeline.steps import STAGE_ERRORS, ProcessingOptions
from videoqa_pipeline.steps.memory import release_model
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.reprocess import SelectionError, claim_batch
from videoqa_pipeline.storage.schema import TABLES
from videoqa_pipeline.storage.tables import read_partition, replace_partition

REEMBED_VIDEOS_JOB = "reembed_videos"
STAGE = "embeddings"
#: The stage's inputs, read from their tables.
INPUTS = ("transcript", "scenes", "frame_analyses")
#: Jobs read from the ledger at a time.
PAGE = 100


class ReembedVideosConfig(VideoSelectionConfig):
    """Which videos to embed again (filters combine with AND)."""


@dataclass
class _KeptLoaded:
    """The run's embedder without ``release``: the stage frees its model after every video, which
    in a run over many videos would load it again for each (half the time per video, measured by
    ``benchmarks/bench_reembed.py``); the op releases it once, at the end."""

    embedder: Embedder
    model_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.model_name = self.embedder.model_name

    @property
    def dimension(self) -> int:
        return self.embedder.dimension

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        return self.embedder.embed(texts)


def _reembed(
    context: dg.OpExecutionContext,
    database: Database,
    job: ledger.Job,
    embedder: _KeptLoaded,
    options: ProcessingOptions,
    settings: Settings,
) -> str:
    """Embed one video of the batch and record the outcome on its job: the job's new status."""
    assert job.video_id is not None  # selected jobs always have one
    started = time.perf_counter()
    try:
        transcript, scenes, frame_analyses = (
            read_partition(database, TABLES[name], job.video_id) for name in INPUTS
        )
        result = steps.embed_video(transcript, scenes, frame_analyses, lambda: embedder, options)
        replace_partition(database, TABLES[STAGE], job.video_id, result.frame())
    except STAGE_ERRORS as error:
        status = ledger.mark_failed(
            database,
            job.id,
            job.attempts,
            context.run_id,
            error=f"{STAGE} failed for video {job.video_id!r}: {error}",
            failed_step=STAGE,
            transient=not getattr(error, "permanent", True),
            max_attempts=settings.worker_max_attempts,
        )
        context.log.warning(f"video {job.video_id}: {error} (job {job.id} now {status})")
        return status or "failed"
    ledger.mark_succeeded(
        database, job.id, job.attempts, context.run_id, {STAGE: time.perf_counter() - started}
    )
    if context.instance.has_dynamic_partition(VIDEOS_PARTITIONS_NAME, job.video_id):
        context.log_event(
            dg.AssetMaterialization(
                asset_key=STAGE, partition=job.video_id, metadata=metadata_of(result.facts)
            )
        )
    return "succeeded"


@dg.op(
    description="Embed the selected videos again, one after another in this run, each recorded in the ledger.",
    pool=AI_POOL,
)
def reembed_videos_op(
    context: dg.OpExecutionContext,
    config: ReembedVideosConfig,
    database: DatabaseResource,
    ai: AIResource,
    pipeline_config: PipelineConfig,
) -> None:
    settings = load_settings()
    if settings.metadata_storage != "postgres":
        raise dg.Failure(
            description="reembed_videos reads and writes the tables in PostgreSQL (METADATA_STORAGE=postgres); "
            "use reprocess_videos with from_stage: embeddings instead",
            allow_retries=False,
        )
    options = processing_options(pipeline_config)
    if not options.enable_embeddings:  # the stage would store no vectors: every video's would go
        raise dg.Failure(
            description="embeddings are disabled (ENABLE_EMBEDDINGS or the run config): nothing to embed again",
            allow_retries=False,
        )
    db = database.get()
    batch = context.run.tags.get(ROOT_RUN_ID_TAG) or context.run_id
    try:  # a model that cannot load fails the run before any video is recorded in it
        embedder = _KeptLoaded(ai.embedder())
    except STAGE_ERRORS as error:
        raise dg.Failure(description=f"the embedder did not load: {error}", allow_retries=False) from None
    try:
        added = claim_batch(
            db,
            # Stale means: not made by the embedder of this run (its resource config may differ
            # from the deployment's settings).
            selection_of(config, current_model=embedder.model_name),
            batch=batch,
            stage=STAGE,
            run_id=context.run_id,
            scheduler_id=scheduler_identity(context.instance).instance_id,
            source_kind="ui",
        )
        context.log.info(f"batch {batch}: {added} video(s) added to this run")
        outcomes: Counter[str] = Counter()
        after = 0
        while jobs := ledger.batch_jobs(
            db, source_kind="ui", batch=batch, run_id=context.run_id, after_id=after, limit=PAGE
        ):
            outcomes.update(_reembed(context, db, job, embedder, options, settings) for job in jobs)
            after = jobs[-1].id
            context.log.info(f"batch {batch}: {dict(outcomes)} so far")
    except SelectionError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    finally:
        release_model(embedder.embedder)
    if outcomes["failed"] or outcomes["pending"]:
        raise dg.Failure(
            description=f"batch {batch}: {outcomes['succeeded']} video(s) embedded, {outcomes['failed']} failed "
            f"(their errors: videoqa status --video VIDEO), {outcomes['pending']} back to pending for "
            "an ordinary run",
            allow_retries=False,
        )


@dg.job(
    name=REEMBED_VIDEOS_JOB,
    description="Embed a chosen set of videos again in this one run (after changing VIDEOQA_EMBED_MODEL): "
    "ops: {reembed_videos: {config: {stale_embeddings: true}}}.",
    tags={"videoqa/kind": "batch"},
)
def reembed_videos() -> None:
    reembed_videos_op.alias("reembed_videos")()

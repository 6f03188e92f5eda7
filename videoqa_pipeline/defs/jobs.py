"""Jobs a user launches: the per-video pipeline, and ``add_videos``, the UI's way to hand in new videos.

``add_videos`` does not process anything itself: it puts each source in the job ledger, exactly as
``videoqa submit`` or an ``INSERT`` would, so the job sensor starts the usual per-video runs, the
ledger remembers each video's source (a later re-materialization or backfill of that partition
finds it), and the job's outcome is tracked and called back like any other.
"""

import dagster as dg
from pydantic import Field

from videoqa_pipeline.defs.hooks import build_job_hooks
from videoqa_pipeline.defs.reembed_videos import reembed_videos
from videoqa_pipeline.defs.reprocess_videos import reprocess_videos
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.fetch import canonical_source_uri
from videoqa_pipeline.media import bundled_sample_video
from videoqa_pipeline.run_tags import ROOT_RUN_ID_TAG
from videoqa_pipeline.settings import Settings, load_settings
from videoqa_pipeline.storage import ledger
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.video_ids import SAMPLE_VIDEO_ID

VIDEO_PIPELINE_JOB = "video_pipeline"
ADD_VIDEOS_JOB = "add_videos"
#: Every per-video stage (the assets' keys) in pipeline order, with the stages it reads.
#: A test checks this against the assets' own dependencies.
STAGE_UPSTREAMS: dict[str, tuple[str, ...]] = {
    "source_video": (),
    "normalized_video": ("source_video",),
    "transcript": ("normalized_video",),
    "scenes": ("normalized_video",),
    "keyframes": ("scenes", "normalized_video"),
    "frame_analyses": ("keyframes",),
    "embeddings": ("transcript", "scenes", "frame_analyses"),
}
PIPELINE_STAGES = tuple(STAGE_UPSTREAMS)


def stages_from(stage: str) -> list[str]:
    """``stage`` and every stage downstream of it, in pipeline order (what ``--from STAGE`` runs)."""
    selected = {stage}
    for name, upstreams in STAGE_UPSTREAMS.items():  # pipeline order: upstreams come first
        if selected.intersection(upstreams):
            selected.add(name)
    return [name for name in PIPELINE_STAGES if name in selected]


#: Dagster's run tag for a run's time limit, enforced by run monitoring (dagster.yaml).
MAX_RUNTIME_TAG = "dagster/max_runtime"


def run_timeout_tags(settings: Settings) -> dict[str, str]:
    """The tag that makes Dagster's run monitoring stop a run after VIDEOQA_RUN_TIMEOUT seconds."""
    return {MAX_RUNTIME_TAG: str(int(settings.run_timeout_seconds))}


def build_video_pipeline_job(settings: Settings) -> "dg.UnresolvedAssetJobDefinition":
    """Every stage for one video, with the hooks that keep the video's job row up to date."""
    return dg.define_asset_job(
        VIDEO_PIPELINE_JOB,
        # Checks run apart (the run hooks treat `embeddings` as the last step): see checks.py.
        selection=dg.AssetSelection.assets(*PIPELINE_STAGES).without_checks(),
        description="Every stage for one video: normalize, transcribe, scenes, keyframes, analyse, embed.",
        hooks=build_job_hooks(settings.worker_max_attempts),
        tags=run_timeout_tags(settings),
    )


class AddVideosConfig(dg.Config):
    """Videos to add: each source becomes one job in the ledger."""

    sources: list[str] = Field(
        description="Paths (absolute, readable where runs execute) or file://, http(s)://, s3:// URIs; "
        "`sample` is the bundled sample video."
    )
    video_ids: list[str] | None = Field(
        default=None,
        description="Optional partition keys, one per source; derived from each source when omitted.",
    )
    max_frames_per_video: int | None = Field(
        default=None, description="Keyframes per video for these jobs (default: MAX_FRAMES_PER_VIDEO)."
    )

    def options(self) -> dict[str, int]:
        """The jobs' processing options (run config overrides)."""
        if self.max_frames_per_video is None:
            return {}
        return {"max_frames_per_video": self.max_frames_per_video}


def _source_uri(source: str) -> str:
    """``sample`` names the bundled sample video; local paths become absolute."""
    if source == SAMPLE_VIDEO_ID:
        return str(bundled_sample_video())
    return canonical_source_uri(source)


def submit_sources(database: Database, config: AddVideosConfig, batch_id: str) -> list[ledger.SubmittedJob]:
    """Put each source of ``config`` in the ledger (checked at once: a bad source fails this run).

    ``batch_id`` (the launch's root run ID) and the source's position are each job's external ID,
    so re-executing the same launch records every video once.

    Raises:
        dagster.Failure: the lists do not match, or a source, ID or option is refused; nothing is
            submitted then, so fixing the config and launching again adds each video once.
    """
    ids: list[str | None] = list(config.video_ids) if config.video_ids else [None] * len(config.sources)
    if len(ids) != len(config.sources):
        raise dg.Failure(
            description=f"video_ids has {len(ids)} entries for {len(config.sources)} sources: "
            "give one per source or none",
            allow_retries=False,
        )
    requests = [
        ledger.JobRequest(
            source_uri=_source_uri(source),
            video_id=video_id or (SAMPLE_VIDEO_ID if source == SAMPLE_VIDEO_ID else None),
            options=config.options(),
            source_kind="ui",
            external_id=f"{batch_id}:{position}",
        )
        for position, (source, video_id) in enumerate(zip(config.sources, ids, strict=True))
    ]
    problems = [ledger.request_problem(request) for request in requests]
    refused = [
        f"{request.source_uri}: {problem}"
        for request, problem in zip(requests, problems, strict=True)
        if problem
    ]
    if refused:
        raise dg.Failure(description="not added: " + "; ".join(refused), allow_retries=False)
    return [ledger.submit_job(database, request, strict=True) for request in requests]


@dg.op(description="Put each source in the job ledger; the job sensor then processes it.")
def add_videos_op(
    context: dg.OpExecutionContext, config: AddVideosConfig, database: DatabaseResource
) -> None:
    batch_id = context.run.tags.get(ROOT_RUN_ID_TAG) or context.run_id
    for job in submit_sources(database.get(), config, batch_id):
        note = "" if job.created else " (already in the ledger)"
        context.log.info(f"job {job.job_id}: video {job.video_id}{note}")


@dg.job(
    name=ADD_VIDEOS_JOB,
    description="Add videos from the Launchpad: ops: {add_videos: {config: {sources: [path or URI, ...]}}}.",
    tags={"videoqa/kind": "intake"},
)
def add_videos() -> None:
    add_videos_op.alias("add_videos")()


def job_definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(
        jobs=[build_video_pipeline_job(settings), add_videos, reprocess_videos, reembed_videos]
    )


@dg.definitions
def jobs() -> dg.Definitions:
    """The jobs for this process's settings."""
    return job_definitions(load_settings())

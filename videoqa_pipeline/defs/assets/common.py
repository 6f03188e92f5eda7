"""What every per-video asset shares: partitions, the retry policy, pools, the error mapping and
the turning of a stage's facts into Dagster metadata.

The stages themselves live in :mod:`videoqa_pipeline.steps` and know nothing of Dagster; an asset
resolves its inputs, calls its stage inside :func:`reported_as_failure` and returns
:func:`materialized` of the result.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping

import dagster as dg
import pandas as pd

from videoqa_pipeline import media
from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.hooks import job_of_run
from videoqa_pipeline.defs.partitions import videos_partitions
from videoqa_pipeline.defs.resources import DatabaseResource
from videoqa_pipeline.run_tags import SOURCE_URI_TAG
from videoqa_pipeline.settings import load_settings
from videoqa_pipeline.steps import STAGE_ERRORS, Fact, Location, Markdown, ProcessingOptions, StageResult
from videoqa_pipeline.steps.result import WARNING_FACT
from videoqa_pipeline.storage.ledger import lookup_source, register_source
from videoqa_pipeline.video_ids import SAMPLE_VIDEO_ID

#: Steps that call an AI provider share this pool (a paid API's rate limit, the CPU for local models).
AI_POOL = "videoqa_ai"
#: Steps that transcode share this pool.
TRANSCODE_POOL = "videoqa_transcode"

#: WORKER_MAX_ATTEMPTS attempts per step, read from the environment when the assets are defined
#: (every process that runs steps loads the code location the same way). Transient errors are
#: retried with exponential backoff; permanent ones become ``Failure(allow_retries=False)``.
RETRY_POLICY = dg.RetryPolicy(
    max_retries=max(0, load_settings().worker_max_attempts - 1),
    delay=2.0,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)

#: Every stage: one partition per video, the same retry policy.
video_asset = functools.partial(dg.asset, partitions_def=videos_partitions, retry_policy=RETRY_POLICY)


@contextlib.contextmanager
def reported_as_failure(step: str, video_id: str) -> Iterator[None]:
    """Turn the stages' errors into Dagster failures a user can read: the one place this happens.

    Permanent errors (bad input, 4xx from an API, a missing S3 bucket, an upstream table without
    the video's row) become ``Failure(allow_retries=False)``; transient ones are re-raised untouched
    so the step's RetryPolicy retries them.
    """
    try:
        yield
    except STAGE_ERRORS as error:
        if not getattr(error, "permanent", True):
            raise
        raise dg.Failure(
            description=f"{step} failed for video {video_id!r}: {error}",
            metadata={"video_id": video_id, "step": step, "error_type": type(error).__name__},
            allow_retries=False,
        ) from error


def metadata_value(fact: Fact) -> dg.MetadataValue:
    """The Dagster metadata value that shows ``fact`` as it is meant to be read."""
    if isinstance(fact, Markdown):
        return dg.MetadataValue.md(fact.text)
    if isinstance(fact, Location):
        return dg.MetadataValue.path(fact.value)
    if isinstance(fact, bool):  # before int: a bool is an int
        return dg.MetadataValue.bool(fact)
    if isinstance(fact, int):
        return dg.MetadataValue.int(fact)
    if isinstance(fact, float):
        return dg.MetadataValue.float(fact)
    if isinstance(fact, str):
        return dg.MetadataValue.text(fact)
    if fact is None:
        return dg.MetadataValue.null()
    return dg.MetadataValue.json(fact)


def metadata_of(facts: Mapping[str, Fact]) -> dict[str, dg.MetadataValue]:
    """A stage's facts as materialization metadata, in the same order."""
    return {name: metadata_value(fact) for name, fact in facts.items()}


def materialized(result: StageResult) -> dg.Output[pd.DataFrame]:
    """The output the IO manager stores (the table's columns, in order) with the facts attached."""
    return dg.Output(result.frame(), metadata=metadata_of(result.facts))


def upstream_warning(context: dg.AssetExecutionContext, asset: str) -> str | None:
    """The warning of the latest materialization of ``asset`` for this partition, if it had one.

    Tables hold rows, not what a stage could not process; a downstream stage that must say why it
    has nothing to work on (no audio because none of it decoded) reads it here.
    """
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[context.partition_key]),
        limit=1,
    ).records
    materialization = records[0].asset_materialization if records else None
    value = materialization.metadata.get(WARNING_FACT) if materialization is not None else None
    text = getattr(value, "value", None)
    return text if isinstance(text, str) and text else None


def processing_options(config: PipelineConfig) -> ProcessingOptions:
    """This run's processing options as the plain value the stages take."""
    return ProcessingOptions.of(config)


def check_settings() -> None:
    """Fail the run's first step, readably and without retries, when the deployment's settings
    cannot work (the code location still loads, so this is where a launched run says why)."""
    problems = load_settings().problems()
    if problems:
        raise dg.Failure(
            description="settings problem (run `videoqa check-config`): " + "; ".join(problems),
            allow_retries=False,
        )


def resolve_source_uri(context: dg.AssetExecutionContext, database: DatabaseResource) -> str:
    """Where the video comes from: the run's tag, else the ledger's record, else the bundled sample.

    Raises:
        dagster.Failure: nothing names a source for this video (no retries: nothing will change).
    """
    video_id = context.partition_key
    db = database.get()
    tagged = context.run.tags.get(SOURCE_URI_TAG)
    if tagged:
        # A run launched without a job (a tag typed in the UI): remembered, so a later
        # re-materialization or backfill of this partition finds it. A job's run needs no record:
        # the ledger already holds its source.
        if job_of_run(context.run.tags) is None:
            register_source(db, video_id, tagged)
        return tagged
    registered = lookup_source(db, video_id)
    if registered:
        return registered
    if video_id == SAMPLE_VIDEO_ID:
        return str(media.bundled_sample_video())
    raise dg.Failure(
        description=(
            f"no source is known for video {video_id!r}: submit it with `videoqa process PATH --video-id {video_id}` "
            f"(or `videoqa submit`), or launch the run with the tag {SOURCE_URI_TAG}=<path or URI>"
        ),
        allow_retries=False,
    )

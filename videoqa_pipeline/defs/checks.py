"""Asset checks: is each video searchable?

``embeddings_searchable`` looks at every video in one grouped query and says, per video, whether
search and ask can find it (a table in the check's metadata, problems first):

* rows present: when embeddings are enabled and the video has transcript text or frame text, it
  must have embedding rows (a warning otherwise: re-materialize ``embeddings``);
* dimensions consistent: every row's vector has ``dimension`` values and the video uses a single
  dimension and model (an error otherwise: the vectors cannot all be compared with one query);
* the right model: rows made by another model than the configured embedder are invisible to
  search, which only compares vectors of the query's own model (a warning).

The check is not partitioned: Dagster's partitioned asset checks are a preview feature that its
check-only jobs cannot run yet, and one pass over all videos is a single cheap query. It is kept
out of the ``video_pipeline`` job (whose run hooks treat ``embeddings`` as the last step); run it
from the asset's Checks tab or with the ``check_searchable`` job (e.g. on a schedule).
"""

import logging
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from videoqa_pipeline.defs.config import PipelineConfig
from videoqa_pipeline.defs.resources import AIResource, DatabaseResource
from videoqa_pipeline.settings import Settings, load_settings
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.schema import EMBEDDINGS, FRAME_ANALYSES, TRANSCRIPT

logger = logging.getLogger(__name__)

SEARCHABLE_CHECK = "embeddings_searchable"
SEARCHABLE_CHECK_JOB = "check_searchable"


@dataclass
class Searchability:
    """What the check found for one video.

    Attributes:
        video_id: The video.
        items: Embedding rows.
        transcript_items: Rows of kind ``transcript``.
        frame_items: Rows of kind ``frame``.
        texts_to_embed: Transcript segments plus frame analyses with some text.
        dimensions: Distinct ``dimension`` values.
        models: Distinct models.
        mismatched_vectors: Rows whose vector length differs from ``dimension``.
        problems: Readable problems; empty when searchable.
        severity: ``ERROR`` for inconsistent vectors, ``WARN`` otherwise.
    """

    video_id: str
    items: int = 0
    transcript_items: int = 0
    frame_items: int = 0
    texts_to_embed: int = 0
    dimensions: list[int] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    mismatched_vectors: int = 0
    problems: list[str] = field(default_factory=list)
    severity: str = "WARN"

    @property
    def searchable(self) -> bool:
        """True when search can find this video's moments (or it has nothing to find)."""
        return not self.problems


def _judge(report: Searchability, *, enabled: bool, expected_model: str | None) -> Searchability:
    """Fill ``report.problems`` and ``report.severity`` from its measurements."""
    if report.mismatched_vectors:
        report.problems.append(
            f"{report.mismatched_vectors} embedding row(s) have a vector whose length differs from their "
            "dimension column; re-materialize embeddings for this video"
        )
        report.severity = "ERROR"
    if len(report.dimensions) > 1 or len(report.models) > 1:
        report.problems.append(
            f"mixed embeddings: dimensions {report.dimensions}, models {report.models}; one query can only "
            "compare vectors of one model - re-materialize embeddings for this video"
        )
        report.severity = "ERROR"
    if enabled and report.items == 0 and report.texts_to_embed > 0:
        report.problems.append(
            f"no embeddings although {report.texts_to_embed} transcript segment(s) or frame text(s) exist; "
            "materialize embeddings for this video"
        )
    if expected_model and report.models and expected_model not in report.models:
        report.problems.append(
            f"embedded with {', '.join(report.models)} but search embeds queries with {expected_model}; "
            "search refuses to mix models, so move this video with `videoqa reprocess VIDEO --from embeddings`"
        )
    return report


def assess_videos(
    database: Database,
    *,
    enabled: bool,
    expected_model: str | None,
    video_ids: list[str] | None = None,
) -> list[Searchability]:
    """Measure every video's embedding rows (one grouped query) and list what keeps each from search.

    Args:
        database: The metadata database.
        enabled: Whether embeddings are enabled (no rows is then a problem when there was text).
        expected_model: The configured embedding model; None skips that comparison.
        video_ids: Only these videos (default: every video with embeddings or text to embed).

    Returns:
        One report per video, ordered by video ID.
    """
    database.ensure_schema()
    length = "vector_dims(embedding)" if database.has_pgvector else "coalesce(array_length(embedding, 1), 0)"
    only = "WHERE video_id = ANY(%(ids)s)" if video_ids is not None else ""
    also = "AND video_id = ANY(%(ids)s)" if video_ids is not None else ""
    query = f"""
        WITH e AS (
            SELECT video_id, count(*) AS items,
                   count(*) FILTER (WHERE kind = 'transcript') AS transcript_items,
                   count(*) FILTER (WHERE kind = 'frame') AS frame_items,
                   array_agg(DISTINCT dimension) AS dimensions,
                   array_agg(DISTINCT model) AS models,
                   count(*) FILTER (WHERE {length} <> dimension) AS mismatched
            FROM {EMBEDDINGS.name} {only} GROUP BY video_id
        ), x AS (
            SELECT video_id, count(*) AS texts FROM (
                SELECT video_id FROM {TRANSCRIPT.name} WHERE btrim(text) <> '' {also}
                UNION ALL
                SELECT video_id FROM {FRAME_ANALYSES.name}
                WHERE (coalesce(btrim(caption), '') <> '' OR coalesce(btrim(ocr_text), '') <> ''
                       OR coalesce(cardinality(labels), 0) > 0) {also}
            ) AS texts GROUP BY video_id
        ), v AS (SELECT video_id FROM e UNION SELECT video_id FROM x)
        SELECT v.video_id, coalesce(e.items, 0), coalesce(e.transcript_items, 0), coalesce(e.frame_items, 0),
               coalesce(e.dimensions, '{{}}'), coalesce(e.models, '{{}}'), coalesce(e.mismatched, 0),
               coalesce(x.texts, 0)
        FROM v LEFT JOIN e USING (video_id) LEFT JOIN x USING (video_id) ORDER BY v.video_id"""
    with database.connection() as conn:
        rows = conn.execute(query, {"ids": video_ids or []}).fetchall()
    found = {
        row[0]: _judge(
            Searchability(
                video_id=row[0],
                items=int(row[1]),
                transcript_items=int(row[2]),
                frame_items=int(row[3]),
                dimensions=sorted(int(value) for value in row[4]),
                models=sorted(str(value) for value in row[5]),
                mismatched_vectors=int(row[6]),
                texts_to_embed=int(row[7]),
            ),
            enabled=enabled,
            expected_model=expected_model,
        )
        for row in rows
    }
    for video_id in video_ids or []:
        found.setdefault(video_id, Searchability(video_id=video_id))
    return [found[video_id] for video_id in sorted(found)]


def assess_video(
    database: Database, video_id: str, *, enabled: bool, expected_model: str | None
) -> Searchability:
    """:func:`assess_videos` for one video."""
    return assess_videos(database, enabled=enabled, expected_model=expected_model, video_ids=[video_id])[0]


def _table(reports: list[Searchability]) -> str:
    lines = ["| video | searchable | items | dimensions | models | problem |", "|---|---|---|---|---|---|"]
    for report in reports:
        dimensions = ", ".join(str(d) for d in report.dimensions) or "-"
        models = ", ".join(report.models) or "-"
        problem = report.problems[0] if report.problems else ""
        lines.append(
            f"| {report.video_id} | {'yes' if report.searchable else 'NO'} | {report.items} | {dimensions} | "
            f"{models} | {problem.replace('|', '/')} |"
        )
    return "\n".join(lines)


#: Most videos listed in the check's metadata table (problems first).
MAX_LISTED_VIDEOS = 100


def build_searchable_check(settings: Settings) -> dg.AssetChecksDefinition:
    """The per-video ``embeddings_searchable`` check for ``settings``' metadata store.

    With ``METADATA_STORAGE=s3`` the rows live in Parquet files that Dagster already validated on
    write; the check then only reports that it does not apply.
    """

    def embeddings_searchable(
        context: dg.AssetCheckExecutionContext,
        database: DatabaseResource,
        pipeline_config: PipelineConfig,
        ai: AIResource,
    ) -> dg.AssetCheckResult:
        if settings.metadata_storage != "postgres":
            return dg.AssetCheckResult(passed=True, metadata={"note": "checked for PostgreSQL metadata only"})
        try:
            # The name the embedder writes into its rows (loading it is what search does too).
            expected = ai.embedder().model_name
            reports = assess_videos(
                database.get(), enabled=pipeline_config.enable_embeddings, expected_model=expected
            )
        except Exception as error:  # a database hiccup must not look like broken videos
            logger.warning("searchable check could not run: %s", error)
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.WARN, description=f"could not check: {error}"
            )
        broken = [report for report in reports if not report.searchable]
        listed = (broken + [report for report in reports if report.searchable])[:MAX_LISTED_VIDEOS]
        severity = (
            dg.AssetCheckSeverity.ERROR
            if any(report.severity == "ERROR" for report in broken)
            else dg.AssetCheckSeverity.WARN
        )
        description = (
            f"{len(broken)} of {len(reports)} video(s) are not searchable: "
            + "; ".join(f"{report.video_id}: {report.problems[0]}" for report in broken[:5])
            if broken
            else f"all {len(reports)} video(s) are searchable"
        )
        metadata: dict[str, Any] = {
            "videos": len(reports),
            "searchable": len(reports) - len(broken),
            "not_searchable": len(broken),
            "not_searchable_ids": dg.MetadataValue.json(
                [report.video_id for report in broken[:MAX_LISTED_VIDEOS]]
            ),
            "per_video": dg.MetadataValue.md(_table(listed)),
        }
        return dg.AssetCheckResult(
            passed=not broken, severity=severity, description=description, metadata=metadata
        )

    return dg.asset_check(
        asset="embeddings",
        name=SEARCHABLE_CHECK,
        description="Every video is searchable: embedding rows present when enabled, one model, "
        "consistent dimensions. Lists each video's state.",
    )(embeddings_searchable)


def build_check_job(check: dg.AssetChecksDefinition) -> "dg.UnresolvedAssetJobDefinition":
    """A job running only the check, partitioned by video (backfill it over many videos)."""
    return dg.define_asset_job(
        SEARCHABLE_CHECK_JOB,
        selection=dg.AssetSelection.checks(check),
        description="Check that each video is searchable (embeddings present, one model, consistent dimensions).",
    )


#: When the schedule runs the check: hourly, a cheap grouped query over the metadata tables.
SEARCHABLE_CHECK_CRON = "17 * * * *"


def check_definitions(settings: Settings) -> dg.Definitions:
    """The check, the job that runs only it, and the schedule that runs that job."""
    check = build_searchable_check(settings)
    check_job = build_check_job(check)
    schedule = dg.ScheduleDefinition(
        name="check_searchable_hourly",
        job=check_job,
        cron_schedule=SEARCHABLE_CHECK_CRON,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs embeddings_searchable every hour, so a video that search cannot find shows up "
        "on the asset's Checks tab without anyone asking.",
    )
    return dg.Definitions(asset_checks=[check], jobs=[check_job], schedules=[schedule])


@dg.definitions
def searchable_check() -> dg.Definitions:
    """The searchable check for this process's settings."""
    return check_definitions(load_settings())

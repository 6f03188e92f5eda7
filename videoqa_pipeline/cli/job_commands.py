"""`videoqa` sub-commands for the job ledger: submit, status, requeue, cancel, reprocess.

These only write and read ``videoqa_jobs``; the job sensor of a running ``dagster dev`` (or
daemon) turns pending jobs into runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import click

from videoqa_pipeline.cli.common import load_settings
from videoqa_pipeline.storage import ledger, schedulers
from videoqa_pipeline.storage.database import Database, DatabaseSettings, get_database
from videoqa_pipeline.storage.errors import StorageError
from videoqa_pipeline.storage.schema import TABLES


def _database() -> Database:
    settings = load_settings()
    database = get_database(
        DatabaseSettings(
            url=settings.database_url,
            home=settings.home,
            pool_size=2,
            timeout_seconds=settings.postgres_timeout,
        )
    )
    try:
        database.ensure_schema()
    except StorageError as error:
        raise click.ClickException(str(error)) from error
    return database


def _age(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    seconds = (datetime.now(timezone.utc) - moment).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _as_dict(job: ledger.Job) -> dict[str, Any]:
    return {
        key: (value.isoformat() if isinstance(value, datetime) else value) for key, value in vars(job).items()
    }


def _echo_job(job: ledger.Job) -> None:
    rows = [
        ("job", job.id),
        ("status", job.status),
        ("video", job.video_id or "-"),
        ("source", job.source_uri or "-"),
        ("from stage", job.from_stage or "all stages"),
        ("options", json.dumps(job.options) if job.options else "-"),
        *([("unreadable", job.unreadable)] if job.unreadable else []),
        ("intake", f"{job.source_kind}" + (f" ({job.external_id})" if job.external_id else "")),
        ("attempts", job.attempts),
        ("run", job.run_id or "-"),
        *([("scheduler", f"instance {job.scheduler_id[:8]}")] if job.scheduler_id else []),
        ("created", f"{job.created_at:%Y-%m-%d %H:%M:%S} ({_age(job.created_at)})"),
        ("started", _age(job.started_at)),
        ("finished", _age(job.finished_at)),
    ]
    if job.step_seconds:
        rows.append(
            (
                "steps",
                ", ".join(f"{step} {seconds:.1f}s" for step, seconds in _in_pipeline_order(job.step_seconds)),
            )
        )
    if job.error:
        where = f" in {job.failed_step}" if job.failed_step else ""
        kind = (
            {True: " (transient)", False: " (permanent)"}.get(job.transient, "")
            if job.transient is not None
            else ""
        )
        rows.append((f"error{where}{kind}", job.error))
    rows.extend(("warning", line) for line in (job.warnings or "").splitlines())
    for name, value in rows:
        click.echo(f"{name:<22} {value}")


def _job_or_fail(database: Database, job_id: int) -> ledger.Job:
    try:
        return ledger.get_job(database, job_id)
    except ledger.JobNotFoundError as error:
        raise click.ClickException(str(error)) from error


@click.command("submit")
@click.argument("source")
@click.option("--video-id", help="Partition key to use (default: derived from the source).")
@click.option("--max-frames", type=int, help="Override max_frames_per_video for this job.")
@click.option("--callback-url", help="Where to POST the outcome when the job finishes.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def submit(
    source: str, video_id: str | None, max_frames: int | None, callback_url: str | None, as_json: bool
) -> None:
    """Add a job for SOURCE (a path or file://, http(s)://, s3:// URI) to the ledger."""
    from videoqa_pipeline.fetch import canonical_source_uri

    options: dict[str, Any] = {}
    if max_frames is not None:
        options["max_frames_per_video"] = max_frames
    source_uri = canonical_source_uri(source)
    policy = load_settings().source_policy
    problem = ledger.source_problem(source_uri, source_kind="cli", policy=policy)
    if problem is not None:
        raise click.ClickException(problem)
    database = _database()
    try:
        job = ledger.submit_job(
            database,
            ledger.JobRequest(
                source_uri, video_id=video_id, options=options, callback_url=callback_url, source_kind="cli"
            ),
            strict=True,
            policy=policy,
        )
    except ledger.JobMessageError as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        click.echo(json.dumps({"job_id": job.job_id, "video_id": job.video_id, "created": job.created}))
    else:
        click.echo(f"job {job.job_id} pending for video {job.video_id}  ({source_uri})")
        click.echo(
            f"A running `dagster dev` (or daemon) picks it up; follow it with `videoqa status {job.job_id}`."
        )


@click.command("status")
@click.argument("job_id", required=False, type=int)
@click.option("--limit", default=20, show_default=True, help="How many recent jobs to list.")
@click.option(
    "--status", "status_filter", type=click.Choice(ledger.JOB_STATUSES), help="Only jobs in this status."
)
@click.option("--before", "before_id", type=int, help="List the jobs older than this job ID (the next page).")
@click.option(
    "--video", "video_id", help="Every job of one video, newest first, and whether Dagster holds it."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(
    job_id: int | None,
    limit: int,
    status_filter: str | None,
    before_id: int | None,
    video_id: str | None,
    as_json: bool,
) -> None:
    """A table of recent jobs, everything about JOB_ID (with its error), or one video's history."""
    database = _database()
    if video_id is not None:
        _echo_video(database, video_id, limit, as_json)
        return
    if job_id is not None:
        job = _job_or_fail(database, job_id)
        if as_json:
            click.echo(json.dumps(_as_dict(job), indent=2, default=str))
        else:
            _echo_job(job)
        return
    jobs = ledger.list_jobs(database, limit=limit, status=status_filter, before_id=before_id)
    if as_json:
        click.echo(json.dumps([_as_dict(job) for job in jobs], indent=2, default=str))
        return
    counts = ledger.count_by_status(database)
    click.echo("  ".join(f"{name} {count}" for name, count in counts.items()) + "  (exact counts)")
    _echo_schedulers(database)
    if not jobs:
        click.echo(
            "no older jobs"
            if before_id is not None
            else "no jobs yet: `videoqa submit PATH`, an INSERT into videoqa_jobs, or a file in the inbox"
        )
        return
    click.echo(f"{'job':>6}  {'status':<9}  {'video':<28}  {'try':>3}  {'created':<9}  source / error")
    for job in jobs:
        detail = job.error if job.status == "failed" and job.error else job.source_uri
        click.echo(
            f"{job.id:>6}  {job.status:<9}  {(job.video_id or '-')[:28]:<28}  {job.attempts:>3}  "
            f"{_age(job.created_at):<9}  {(detail or '-')[:90]}"
        )
    if len(jobs) == limit:
        where = f" --status {status_filter}" if status_filter else ""
        click.echo(f"older jobs: videoqa status{where} --before {jobs[-1].id}")


def _echo_video(database: Database, video_id: str, limit: int, as_json: bool) -> None:
    """One video's jobs (its lineage in the ledger, whether or not Dagster still holds its runs)."""
    jobs = ledger.jobs_for_video(database, video_id, limit=limit)
    if as_json:
        click.echo(json.dumps([_as_dict(job) for job in jobs], indent=2, default=str))
        return
    if not jobs:
        source = ledger.lookup_source(database, video_id)
        if source is None:
            raise click.ClickException(f"no job for video {video_id!r} in the ledger, and no known source")
        click.echo(f"no job in the ledger: processed by `videoqa process` (or `demo`) from {source}")
        click.echo(_partition_line(video_id))
        return
    click.echo(f"{'job':>6}  {'status':<9}  {'from':<16}  {'try':>3}  {'finished':<9}  run / error")
    for job in jobs:
        detail = job.error if job.status == "failed" and job.error else (job.run_id or "-")
        click.echo(
            f"{job.id:>6}  {job.status:<9}  {job.from_stage or 'source_video':<16}  {job.attempts:>3}  "
            f"{_age(job.finished_at):<9}  {detail[:90]}"
        )
    click.echo(_partition_line(video_id))


def _partition_line(video_id: str) -> str:
    """Whether the video is in Dagster's partition working set (its runs and lineage in the UI)."""
    from videoqa_pipeline.defs.partitions import VIDEOS_PARTITIONS_NAME
    from videoqa_pipeline.runner import open_instance

    try:
        with open_instance(load_settings()) as instance:
            held = instance.has_dynamic_partition(VIDEOS_PARTITIONS_NAME, video_id)
    except Exception as error:  # any failure to read the instance: the ledger's answer stands without it
        return f"Dagster instance not readable here ({type(error).__name__}): partition unknown"
    if held:
        return "partition: in Dagster (runs and lineage in the UI)"
    return (
        "partition: not in Dagster (retired beyond VIDEOQA_PARTITION_WORKING_SET, or not run yet); "
        f"its results stay in the tables, `videoqa reprocess {video_id}` brings it back"
    )


def _echo_schedulers(database: Database) -> None:
    """Which Dagster instance takes new jobs, and anything an operator must know about the others."""
    known = schedulers.list_schedulers(database)
    holder = next((scheduler for scheduler in known if scheduler.holds_lease), None)
    if holder is not None:
        click.echo(f"scheduler: {holder.label}, last tick {holder.silent_seconds:.0f} s ago")
    for warning in schedulers.scheduler_warnings(known):
        click.echo(f"warning: {warning}")


@click.command("requeue")
@click.argument("job_id", type=int)
@click.option("--force", is_flag=True, help="Also requeue a job that succeeded.")
def requeue(job_id: int, force: bool) -> None:
    """Put a failed or cancelled job back to pending (a new attempt, a fresh retry budget)."""
    try:
        job = ledger.requeue_job(_database(), job_id, force=force)
    except (ledger.JobNotFoundError, ledger.JobStateError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"job {job.id} pending again (next attempt {job.attempts + 1})")


@click.command("cancel")
@click.argument("job_id", type=int)
def cancel(job_id: int) -> None:
    """Cancel a pending, queued or running job (and terminate its run when this machine can)."""
    try:
        job = ledger.cancel_job(_database(), job_id)
    except (ledger.JobNotFoundError, ledger.JobStateError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"job {job.id} cancelled")
    if job.run_id:
        click.echo(_terminate(job.run_id))


def _terminate(run_id: str) -> str:
    """Ask the Dagster instance (DAGSTER_HOME) to stop ``run_id``; say what happened."""
    from videoqa_pipeline.runner import open_instance

    with open_instance(load_settings()) as instance:
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return f"run {run_id} is not running"
        instance.run_coordinator.cancel_run(run_id)
    return f"run {run_id}: termination requested"


def _reprocess_one(database: Database, video_id: str, from_stage: str) -> None:
    """One video by ID: its source may also be one ``videoqa process`` registered (or the sample)."""
    from videoqa_pipeline.media import bundled_sample_video
    from videoqa_pipeline.video_ids import SAMPLE_VIDEO_ID

    source = ledger.lookup_source(database, video_id)
    if source is None and video_id == SAMPLE_VIDEO_ID:
        source = str(bundled_sample_video())
    if source is None:
        raise click.ClickException(
            f"no source is known for video {video_id!r}: submit it first with `videoqa submit PATH --video-id {video_id}`"
        )
    try:
        job = ledger.submit_job(
            database,
            ledger.JobRequest(source, video_id=video_id, from_stage=from_stage, source_kind="cli"),
            strict=True,
        )
    except ledger.JobMessageError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"job {job.job_id} pending: {video_id} from {from_stage} on")


def _current_embedding_model() -> str:
    """The model name new vectors are stored under with this process's settings."""
    from videoqa_pipeline.ai import get_embedder

    settings = load_settings()
    if settings.metadata_storage != "postgres":
        raise click.ClickException(
            "--stale-embeddings reads the embeddings table, which needs METADATA_STORAGE=postgres"
        )
    return get_embedder(settings.ai).model_name


@click.command("reprocess")
@click.argument("video_ids", nargs=-1)
@click.option(
    "--from",
    "from_stage",
    type=click.Choice(ledger.STAGES),
    default=ledger.STAGES[0],
    show_default=True,
    help="Re-materialize this stage and everything downstream of it.",
)
@click.option(
    "--source-prefix", help="Only videos whose source starts with this (a folder, a bucket prefix)."
)
@click.option(
    "--finished-after",
    type=click.DateTime(),
    help="Only videos whose latest job finished at or after this (UTC).",
)
@click.option(
    "--finished-before",
    type=click.DateTime(),
    help="Only videos whose latest job finished before this (UTC).",
)
@click.option(
    "--stale-embeddings",
    is_flag=True,
    help="Only videos with vectors of another embedding model than the configured one.",
)
@click.option(
    "--all", "every_video", is_flag=True, help="Every video the ledger knows (when no filter is given)."
)
@click.option(
    "--batch", help="Name of this submission; the same name again queues nothing twice (default: new)."
)
@click.option("--dry-run", is_flag=True, help="Only count the videos selected.")
@click.option(
    "--in-one-run",
    is_flag=True,
    help="With --from embeddings: embed the selected videos one after another in one run here "
    "(reembed_videos), not one queued run per video.",
)
def reprocess(
    video_ids: tuple[str, ...],
    from_stage: str,
    source_prefix: str | None,
    finished_after: datetime | None,
    finished_before: datetime | None,
    stale_embeddings: bool,
    every_video: bool,
    batch: str | None,
    dry_run: bool,
    in_one_run: bool,
) -> None:
    """Re-materialize videos from a stage on (e.g. after changing the embedding model).

    One video ID queues that video; several IDs or filters queue every video they select, one job
    each, in a single statement, whether or not the video is still a partition in Dagster.
    """
    import uuid

    from videoqa_pipeline.storage import reprocess as selections

    database = _database()
    filtered = source_prefix or finished_after or finished_before or stale_embeddings or every_video
    if in_one_run:
        if from_stage != "embeddings" or dry_run or batch is not None:
            raise click.UsageError(
                "--in-one-run re-embeds: use it with --from embeddings, without --dry-run or --batch"
            )
        _reembed_in_one_run(
            video_ids, source_prefix, finished_after, finished_before, stale_embeddings, every_video
        )
        return
    if len(video_ids) == 1 and not filtered and not dry_run and batch is None:
        _reprocess_one(database, video_ids[0], from_stage)
        return
    selection = selections.VideoSelection(
        video_ids=video_ids,
        source_prefix=source_prefix,
        finished_after=_utc(finished_after),
        finished_before=_utc(finished_before),
        embedding_model_other_than=_current_embedding_model() if stale_embeddings else None,
        every_video=every_video,
    )
    try:
        if dry_run:
            click.echo(f"{selections.count_selected(database, selection)} video(s) selected")
            return
        name = batch or f"reprocess-{uuid.uuid4().hex[:12]}"
        selected, queued = selections.queue_selected(
            database, selection, from_stage=from_stage, batch=name, source_kind="cli"
        )
    except selections.SelectionError as error:
        raise click.UsageError(str(error)) from error
    again = f", {selected - queued} already queued by this batch" if selected != queued else ""
    click.echo(f"batch {name}: {queued} job(s) pending from {from_stage} on ({selected} selected{again})")


def _reembed_in_one_run(
    video_ids: tuple[str, ...],
    source_prefix: str | None,
    finished_after: datetime | None,
    finished_before: datetime | None,
    stale_embeddings: bool,
    every_video: bool,
) -> None:
    """The selection as ``reembed_videos`` run config, run here in the persistent instance."""
    from videoqa_pipeline.runner import open_instance, reembed_in_one_run

    times = {"finished_after": _utc(finished_after), "finished_before": _utc(finished_before)}
    selection = {
        "video_ids": list(video_ids),
        "source_prefix": source_prefix,
        **{name: moment.isoformat() if moment else None for name, moment in times.items()},
        "stale_embeddings": stale_embeddings,
        "every_video": every_video,
    }
    settings = load_settings()
    with open_instance(settings) as instance:
        success, run_id, error = reembed_in_one_run(selection, settings=settings, instance=instance)
    if not success:
        raise click.ClickException(f"run {run_id}: {error}")
    click.echo(
        f"run {run_id}: the selected videos are embedded again (videoqa status --video VIDEO for each)"
    )


def _utc(moment: datetime | None) -> datetime | None:
    """click's DateTime is naive: the CLI's times are UTC, like the ledger's."""
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
    for command in (submit, status, requeue, cancel, reprocess):
        group.add_command(command)


def _in_pipeline_order(step_seconds: Mapping[str, float]) -> list[tuple[str, float]]:
    """Steps as the pipeline runs them (unknown names last), not in storage order."""
    order = {name: position for position, name in enumerate(TABLES)}
    return sorted(step_seconds.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))

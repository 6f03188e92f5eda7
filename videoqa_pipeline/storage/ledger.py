"""The job ledger: every request to process a video, whatever its source, and what became of it.

Producers (``psql``, the CLI, the SQS sensor, the webhook, the inbox folder) add rows to
``videoqa_jobs``; the job sensor turns pending rows into Dagster runs; the run itself and the run
status sensors write the outcome back. Everything here is a plain function over
:class:`~videoqa_pipeline.storage.database.Database` (no Dagster), so the service, the CLI and
the tests share one implementation of the state machine::

    pending --claim--> queued --run starts--> running --> succeeded
       ^                  |                      |------> failed     (bad input, or attempts used up)
       |                  |                      '------> pending    (transient failure, attempts left)
       '---- requeue -----+---- cancel ----> cancelled

Guarantees and how they are kept:

* **Idempotent intake.** ``(source_kind, external_id)`` is unique, so a re-delivered SQS message
  or webhook event is recorded once (:func:`submit_job` returns the existing row).
* **One run per attempt.** Claiming a row bumps ``attempts`` in the same transaction that marks it
  queued; its run key is :func:`job_run_key` ``(id, attempts)``, which Dagster deduplicates.
* **Updates keyed by job, attempt and run.** Every write-back names the attempt it belongs to and
  only moves a row forward, so a late event from an old run, a duplicate sensor tick and the run's
  own update can arrive in any order and in any number.
* **A row nobody can read fails alone.** Producers write the ``jsonb`` columns with plain SQL, and
  PostgreSQL stores values Python's ``json`` cannot decode (integers of thousands of digits,
  nesting thousands deep). Those columns are read as text and decoded by the one strict decoder
  (:func:`videoqa_pipeline.jsonsafe.decode_json`): a listing shows such a row with the reason in
  :attr:`Job.unreadable`, and the job sensor fails it at intake instead of raising on every tick.
* **Jobs belong to the scheduler that queued them.** A claimed row records the Dagster instance
  whose sensor claimed it (``scheduler_id``): only that instance can see the run, so only it
  re-requests or sweeps the job (see :mod:`videoqa_pipeline.storage.schedulers`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from videoqa_pipeline.fetch import REMOTE_SOURCE_KINDS, SUPPORTED_SCHEMES, SourcePolicy, local_path_of
from videoqa_pipeline.jsonsafe import JsonRefused, decode_json, storable_text
from videoqa_pipeline.options import ProcessingOptions
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline.storage.schema import JOB_STATUSES, JOBS_TABLE, TABLES
from videoqa_pipeline.video_ids import InvalidVideoIdError, validate_video_id, video_id_from_uri

logger = logging.getLogger(__name__)

PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = JOB_STATUSES
ACTIVE_STATUSES = (QUEUED, RUNNING)
FINAL_STATUSES = (SUCCEEDED, FAILED, CANCELLED)

#: Where a job came from. ``postgres`` is the column default: a producer's plain INSERT.
SOURCE_KINDS = ("postgres", "sqs", "webhook", "inbox", "cli", "api", "ui")

#: Stages a job may restart from (``from_stage``); pipeline order.
STAGES = tuple(TABLES)  # one table per stage

#: The row as :class:`Job` reads it. ``jsonb`` columns come back as text, decoded by
#: :func:`_decoded_column`: psycopg's own JSON loader would raise on a hostile value mid-fetch.
_COLUMNS = (
    "id, video_id, source_uri, options::text AS options, from_stage, source_kind, external_id, status, "
    "attempts, retry_base, run_id, error, failed_step, transient, step_seconds::text AS step_seconds, "
    "callback_url, scheduler_id, warnings, created_at, queued_at, started_at, finished_at, updated_at"
)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
#: How long the reason quoted in an unreadable column's message may be.
_REASON_CHARS = 300


class JobMessageError(ValueError):
    """A job message or request cannot be used; the message says what is wrong and how to fix it."""


class JobNotFoundError(LookupError):
    """No job has the given ID."""


class JobStateError(ValueError):
    """The job is in a state that does not allow the requested change."""


@dataclass(frozen=True)
class JobRequest:
    """A request to process one video, as a producer states it.

    Attributes:
        source_uri: A local path, ``file://``, ``http(s)://`` or ``s3://`` URI.
        video_id: The partition key to use; derived from ``source_uri`` when None.
        options: Per-job overrides of the processing config (``PipelineConfig`` fields).
        callback_url: Where to POST the outcome, when the producer wants one.
        source_kind: ``postgres``, ``sqs``, ``webhook``, ``inbox``, ``cli`` or ``api``.
        external_id: The producer's ID for this delivery (SQS message ID, webhook event ID, inbox
            file fingerprint); unique per ``source_kind``, so duplicates are recorded once.
        from_stage: Re-materialize only this stage and everything downstream (None: all stages).
    """

    source_uri: str
    video_id: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    callback_url: str | None = None
    source_kind: str = "api"
    external_id: str | None = None
    from_stage: str | None = None


@dataclass(frozen=True)
class SubmittedJob:
    """The ledger row a submission landed in.

    Attributes:
        job_id: Ledger ID.
        video_id: Partition key of the job (empty when the request was rejected before one was known).
        created: False when this was a duplicate delivery of an already recorded job.
    """

    job_id: int
    video_id: str
    created: bool


@dataclass(frozen=True)
class Job:
    """One row of ``videoqa_jobs``.

    ``unreadable`` says why ``options`` or ``step_seconds`` could not be decoded (they are then
    ``{}`` and None); ``scheduler_id`` is the Dagster instance that queued the current attempt.
    ``warnings`` says what a succeeded attempt could not process, one ``step: text`` line per step.
    """

    id: int
    video_id: str | None
    source_uri: str
    options: dict[str, Any]
    from_stage: str | None
    source_kind: str
    external_id: str | None
    status: str
    attempts: int
    retry_base: int
    run_id: str | None
    error: str | None
    failed_step: str | None
    transient: bool | None
    step_seconds: dict[str, float] | None
    callback_url: str | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    scheduler_id: str | None = None
    unreadable: str | None = None
    warnings: str | None = None

    @property
    def run_key(self) -> str:
        """The Dagster run key of this job's current attempt."""
        return job_run_key(self.id, self.attempts)


@dataclass(frozen=True)
class ClaimResult:
    """What one claim of pending rows did.

    Attributes:
        queued: Jobs now queued, ``attempts`` already bumped: request one run each.
        rejected: Jobs that could not be run as written (bad video ID, options or source) and
            are now failed with the reason.
    """

    queued: list[Job]
    rejected: list[Job]


def job_run_key(job_id: int, attempt: int) -> str:
    """The run key of one attempt of a job: Dagster launches at most one run per key and sensor."""
    return f"job-{job_id}-attempt-{attempt}"


# --------------------------------------------------------------------------------------------
# Validation


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Check per-job options against the processing config and return them normalized.

    Args:
        options: Overrides of the processing options, e.g. ``{"max_frames_per_video": 10}``.

    Returns:
        The same keys with values coerced to the field types.

    Raises:
        JobMessageError: an unknown key or a bad value; every problem is listed.
    """
    if not isinstance(options, Mapping):
        raise JobMessageError(f"options must be a JSON object, got {type(options).__name__}")
    if not options:
        return {}
    known = set(ProcessingOptions.model_fields)
    unknown = sorted(str(key) for key in options if key not in known)
    if unknown:
        raise JobMessageError(
            f"unknown option(s) {', '.join(repr(k) for k in unknown)}: allowed are {', '.join(sorted(known))}"
        )
    try:
        validated = ProcessingOptions(**dict(options))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
        raise JobMessageError(f"invalid option value(s): {problems}") from None
    return {key: getattr(validated, key) for key in options}


def source_problem(
    source_uri: str, *, source_kind: str = "api", policy: SourcePolicy | None = None
) -> str | None:
    """Why ``source_uri`` cannot be processed, or None when it looks readable.

    Local paths must exist (checked where the sensor runs); remote URIs are only checked for a
    supported scheme, since reading them is the run's job. With a ``policy``, a webhook or SQS
    job's local path must lie under the allowed roots and an http(s) URL must not name an
    internal address (the fetch checks the address it actually connects to as well).
    """
    if not source_uri or not source_uri.strip():
        return "source_uri is empty: give a path or a file://, http(s):// or s3:// URI"
    if "\x00" in source_uri:
        return "source_uri contains a NUL character"
    if policy is not None:
        refused = policy.problem(source_uri, remote=source_kind in REMOTE_SOURCE_KINDS)
        if refused is not None:
            return refused
    local = local_path_of(source_uri)
    if local is not None:
        if not local.is_file():
            return f"source {source_uri!r} not found: no such file (is the path absolute and readable here?)"
        return None
    scheme = urlsplit(source_uri).scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        return (
            f"source {source_uri!r} has unsupported scheme {scheme!r}: use a path, "
            "file://, http(s):// or s3://"
        )
    return None


def request_problem(request: JobRequest, *, policy: SourcePolicy | None = None) -> str | None:
    """Why ``request`` would be refused (its source, video ID, options or stage), or None.

    Lets a producer that submits several videos at once check them all before it records any.
    """
    problem = source_problem(request.source_uri, source_kind=request.source_kind, policy=policy)
    if problem is not None:
        return problem
    try:
        _checked_video_id(request.video_id, request.source_uri)
        validate_options(request.options)
        _checked_stage(request.from_stage)
    except (JobMessageError, InvalidVideoIdError) as error:
        return str(error)
    return None


def _checked_video_id(video_id: str | None, source_uri: str) -> str:
    if video_id:
        return validate_video_id(video_id)
    return video_id_from_uri(source_uri)


def _checked_stage(stage: str | None) -> str | None:
    if stage is not None and stage not in STAGES:
        raise JobMessageError(f"unknown stage {stage!r}: expected one of {', '.join(STAGES)}")
    return stage


def parse_job_message(body: str | bytes | Mapping[str, Any]) -> JobRequest:
    """Decode a JSON job message ``{source_uri, video_id?, options?, callback_url?, from_stage?}``.

    Args:
        body: The message body (JSON text or bytes) or an already decoded mapping.

    Returns:
        A :class:`JobRequest` (``source_kind`` "api"; callers set their own with
        ``dataclasses.replace``). ``options`` and ``video_id`` are validated.

    Raises:
        JobMessageError: not JSON, not an object, a missing or empty ``source_uri``, an unknown
            field, a bad video ID or bad options; the message says which.
    """
    if isinstance(body, bytes | bytearray):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise JobMessageError(f"job message is not UTF-8 text: {error}") from None
    if isinstance(body, str):
        try:
            decoded = json.loads(body)
        except json.JSONDecodeError as error:
            raise JobMessageError(f"job message is not valid JSON: {error}") from None
    else:
        decoded = body
    if not isinstance(decoded, Mapping):
        raise JobMessageError(
            f'job message must be a JSON object like {{"source_uri": "s3://bucket/video.mp4"}}, '
            f"got {type(decoded).__name__}"
        )
    allowed = {"source_uri", "video_id", "options", "callback_url", "from_stage"}
    unknown = sorted(str(key) for key in decoded if key not in allowed)
    if unknown:
        raise JobMessageError(f"unknown field(s) {unknown} in job message: allowed are {sorted(allowed)}")
    source_uri = decoded.get("source_uri")
    if not isinstance(source_uri, str) or not source_uri.strip():
        raise JobMessageError("job message has no source_uri (a path or a file://, http(s):// or s3:// URI)")
    video_id = decoded.get("video_id")
    if video_id is not None and not isinstance(video_id, str):
        raise JobMessageError(f"video_id must be a string, got {type(video_id).__name__}")
    callback_url = decoded.get("callback_url")
    if callback_url is not None and (
        not isinstance(callback_url, str) or urlsplit(callback_url).scheme not in ("http", "https")
    ):
        raise JobMessageError(f"callback_url must be an http(s):// URL, got {callback_url!r}")
    from_stage = decoded.get("from_stage")
    if from_stage is not None and not isinstance(from_stage, str):
        raise JobMessageError(f"from_stage must be a string, got {type(from_stage).__name__}")
    try:
        if video_id is not None:
            validate_video_id(video_id)
    except InvalidVideoIdError as error:
        raise JobMessageError(str(error)) from None
    options = validate_options(decoded.get("options") or {})
    return JobRequest(
        source_uri=source_uri.strip(),
        video_id=video_id,
        options=options,
        callback_url=callback_url,
        from_stage=_checked_stage(from_stage),
    )


# --------------------------------------------------------------------------------------------
# Intake


def _decoded_column(text: str | None, what: str) -> tuple[Any, str | None]:
    """A ``jsonb`` column read as text, decoded strictly: ``(value, None)`` or ``(None, reason)``."""
    if text is None:
        return None, None
    try:
        return decode_json(text, what=what), None
    except JsonRefused as error:
        return None, str(error)[:_REASON_CHARS]


def _job_from_row(row: Mapping[str, Any]) -> Job:
    options, options_problem = _decoded_column(row["options"], "options")
    if options_problem is None and not isinstance(options, dict):
        options, options_problem = None, f"options is a JSON {type(options).__name__}, not an object"
    step_seconds, steps_problem = _decoded_column(row["step_seconds"], "step_seconds")
    if steps_problem is None and step_seconds is not None and not isinstance(step_seconds, dict):
        step_seconds, steps_problem = None, "step_seconds is not a JSON object"
    problems = [problem for problem in (options_problem, steps_problem) if problem]
    return Job(
        id=int(row["id"]),
        video_id=row["video_id"],
        source_uri=row["source_uri"],
        options=dict(options or {}),
        from_stage=row["from_stage"],
        source_kind=row["source_kind"],
        external_id=row["external_id"],
        status=row["status"],
        attempts=int(row["attempts"]),
        retry_base=int(row["retry_base"]),
        run_id=row["run_id"],
        error=row["error"],
        failed_step=row["failed_step"],
        transient=row["transient"],
        step_seconds=step_seconds,
        callback_url=row["callback_url"],
        created_at=row["created_at"],
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
        scheduler_id=row["scheduler_id"],
        warnings=row["warnings"],
        unreadable="; ".join(problems) or None,
    )


def _insert_job(
    conn: psycopg.Connection,
    *,
    source_uri: str,
    video_id: str | None,
    options: Mapping[str, Any],
    source_kind: str,
    external_id: str | None,
    callback_url: str | None,
    from_stage: str | None,
    status: str = PENDING,
    error: str | None = None,
    raw_body: str | None = None,
) -> SubmittedJob:
    """Insert a job, or find the one already recorded for ``(source_kind, external_id)``."""
    finished = "now()" if status in FINAL_STATUSES else "NULL"
    row = conn.execute(
        f"""
        INSERT INTO {JOBS_TABLE} (source_uri, video_id, options, source_kind, external_id, callback_url,
                                  from_stage, status, error, raw_body, finished_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, {finished})
        ON CONFLICT (source_kind, external_id) DO NOTHING
        RETURNING id, video_id
        """,
        (
            source_uri,
            video_id,
            Jsonb(dict(options)),
            source_kind,
            external_id,
            callback_url,
            from_stage,
            status,
            storable_text(error) if error is not None else None,
            storable_text(raw_body) if raw_body is not None else None,
        ),
    ).fetchone()
    if row is not None:
        return SubmittedJob(job_id=int(row[0]), video_id=row[1] or "", created=True)
    existing = conn.execute(
        f"SELECT id, video_id FROM {JOBS_TABLE} WHERE source_kind = %s AND external_id = %s",
        (source_kind, external_id),
    ).fetchone()
    if existing is None:  # the conflicting row was deleted in between: extremely unlikely, but say so
        raise JobStateError(
            f"job {source_kind}/{external_id} conflicted with a row that no longer exists; submit it again"
        )
    logger.info("duplicate delivery %s/%s recorded once as job %s", source_kind, external_id, existing[0])
    return SubmittedJob(job_id=int(existing[0]), video_id=existing[1] or "", created=False)


def submit_job(
    db: Database,
    request: JobRequest,
    *,
    connection: psycopg.Connection | None = None,
    strict: bool = False,
    policy: SourcePolicy | None = None,
) -> SubmittedJob:
    """Record a job in the ledger, once per ``(source_kind, external_id)``.

    A request with a bad video ID, bad options or an unknown stage is still recorded, as a
    **failed** job carrying the reason, so a producer that cannot be answered synchronously
    (SQS, the inbox) finds out with ``videoqa status``; pass ``strict=True`` to get the
    :class:`JobMessageError` instead (the CLI does). Whether the source is readable is checked
    later by the job sensor, where the run will read it.

    Args:
        db: The metadata database.
        request: What to process.
        connection: Use this connection (and its transaction) instead of a pooled one, e.g. to
            commit the job together with the producer's own bookkeeping.
        strict: Raise instead of recording invalid requests.
        policy: When given, refuse sources it forbids (a webhook or SQS job naming a local file
            outside the allowed roots, an http(s) URL naming an internal address), and callback
            URLs naming an internal address.

    Returns:
        The job's ID and video ID; ``created`` is False for a duplicate delivery.

    Raises:
        JobMessageError: ``strict`` and the request is invalid, or ``source_kind`` is unknown.
        DatabaseUnavailableError: the database cannot be reached.
    """
    if request.source_kind not in SOURCE_KINDS:
        raise JobMessageError(
            f"unknown source_kind {request.source_kind!r}: expected one of {', '.join(SOURCE_KINDS)}"
        )
    error: str | None = None
    video_id: str | None = None
    options: dict[str, Any] = {}
    try:
        if not request.source_uri or not request.source_uri.strip():
            raise JobMessageError("source_uri is empty: give a path or a file://, http(s):// or s3:// URI")
        nul = _nul_field(request)
        if nul is not None:
            raise JobMessageError(f"{nul} contains a NUL character, which text fields cannot hold")
        if policy is not None:
            refused = policy.problem(
                request.source_uri, remote=request.source_kind in REMOTE_SOURCE_KINDS
            ) or policy.callback_problem(request.callback_url)
            if refused is not None:
                raise JobMessageError(refused)
        video_id = _checked_video_id(request.video_id, request.source_uri)
        options = validate_options(request.options)
        _checked_stage(request.from_stage)
    except (JobMessageError, InvalidVideoIdError) as problem:
        if strict:
            raise JobMessageError(str(problem)) from None
        error = f"rejected at intake: {problem}"
        options = dict(request.options) if isinstance(request.options, Mapping) else {}
        if isinstance(problem, InvalidVideoIdError):
            video_id = None  # never store an unsafe partition key
    kwargs: dict[str, Any] = {
        # A rejected request is kept as readable as PostgreSQL allows: NUL becomes U+FFFD.
        "source_uri": storable_text(request.source_uri or ""),
        "video_id": video_id,
        "options": _storable_options(options),
        "source_kind": request.source_kind,
        "external_id": storable_text(request.external_id) if request.external_id else None,
        "callback_url": storable_text(request.callback_url) if request.callback_url else None,
        "from_stage": request.from_stage if error is None else None,
        "status": PENDING if error is None else FAILED,
        "error": error,
    }
    if connection is not None:
        return _insert_job(connection, **kwargs)
    with db.connection() as conn:
        return _insert_job(conn, **kwargs)


def _nul_field(request: JobRequest) -> str | None:
    """The first field of ``request`` holding a NUL character (PostgreSQL text cannot store one).

    The video ID is not looked at: its own rule (:func:`validate_video_id`) refuses NUL with a
    message that spells out the allowed characters.
    """
    texts = {
        "source_uri": request.source_uri,
        "callback_url": request.callback_url,
        "external_id": request.external_id,
        "options": json.dumps(_json_safe(request.options)) if isinstance(request.options, Mapping) else "",
    }
    for name, text in texts.items():
        if text and ("\x00" in text or "\\u0000" in text):
            return name
    return None


def _json_safe(options: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(options), default=str))


def _storable_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` as ``jsonb`` stores them: anything not JSON becomes its ``str``, and NUL and lone
    surrogates (which PostgreSQL refuses in jsonb strings) become U+FFFD."""
    return dict(_storable_json(_json_safe(options)))


def _storable_json(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value.replace("\x00", "\ufffd"))
    if isinstance(value, dict):
        return {_storable_json(key): _storable_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_storable_json(item) for item in value]
    return value


def record_rejected_job(
    db: Database, *, source_kind: str, external_id: str | None, raw_body: str, error: str
) -> SubmittedJob:
    """Store an undecodable message as a failed job with its raw body and the reason.

    Nothing a producer sends is silently dropped: the row shows up in ``videoqa status``.

    Args:
        db: The metadata database.
        source_kind: Where the message came from (``sqs``, ``webhook``, ...).
        external_id: The message's ID, so a re-delivery is recorded once.
        raw_body: The message as received (stored verbatim, truncated to 64 KiB).
        error: Why it could not be decoded.

    Returns:
        The failed job's ID (``video_id`` empty); ``created`` False for a duplicate delivery.
    """
    with db.connection() as conn:
        return _insert_job(
            conn,
            source_uri="",
            video_id=None,
            options={},
            source_kind=source_kind,
            external_id=external_id,
            callback_url=None,
            from_stage=None,
            status=FAILED,
            error=f"rejected at intake: {error}",
            raw_body=raw_body[:65536],
        )


# --------------------------------------------------------------------------------------------
# Reading


def get_job(db: Database, job_id: int) -> Job:
    """The job with ID ``job_id``.

    Raises:
        JobNotFoundError: no such job.
    """
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(f"SELECT {_COLUMNS} FROM {JOBS_TABLE} WHERE id = %s", (job_id,)).fetchone()
    if row is None:
        raise JobNotFoundError(f"no job {job_id} in the ledger: `videoqa status` lists recent jobs")
    return _job_from_row(row)


def list_jobs(
    db: Database, *, limit: int = 20, status: str | None = None, before_id: int | None = None
) -> list[Job]:
    """The most recent jobs, newest first, optionally only those in ``status``.

    Pages by key, not by offset: ``before_id`` (the last ID of the previous page) starts the next
    page below it, so page 1,000 of a million jobs costs what page 1 does (the primary key, or
    ``(status, id)`` with a status, walked backwards from that ID).
    """
    where = (
        ("WHERE status = %s AND id < %s" if before_id is not None else "WHERE status = %s")
        if status
        else ("WHERE id < %s" if before_id is not None else "")
    )
    params = [value for value in (status or None, before_id) if value is not None]
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"SELECT {_COLUMNS} FROM {JOBS_TABLE} {where} ORDER BY id DESC LIMIT %s", (*params, limit)
        ).fetchall()
    return [_job_from_row(row) for row in rows]


def count_by_status(db: Database) -> dict[str, int]:
    """Number of jobs per status (every status present, zero when none); for status displays.

    Exact, and read from ``videoqa_job_counts`` (a few rows kept by triggers, migration 7), not
    by counting the ledger: the same cost at a million jobs as at ten.
    """
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT status, sum(jobs) FROM videoqa_job_counts GROUP BY status HAVING sum(jobs) <> 0"
        ).fetchall()
    counts = dict.fromkeys(JOB_STATUSES, 0)
    counts.update({str(status): int(count) for status, count in rows})
    return counts


def count_active(
    db: Database, connection: psycopg.Connection | None = None, *, scheduler_id: str | None = None
) -> int:
    """Jobs queued or running: what the backpressure cap is compared against.

    With ``scheduler_id``, only that Dagster instance's: its run queue is what the cap protects,
    and another instance's jobs (a stopped one's, after a failover) must not use up its headroom.
    """
    query = f"""SELECT count(*) FROM {JOBS_TABLE} WHERE status IN ('queued', 'running')
                AND (%(scheduler)s::text IS NULL OR scheduler_id = %(scheduler)s)"""
    params = {"scheduler": scheduler_id}
    if connection is not None:
        row = connection.execute(query, params).fetchone()
    else:
        with db.connection() as conn:
            row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------------------------
# The job sensor's side


def claim_pending_jobs(
    db: Database, limit: int, *, policy: SourcePolicy | None = None, scheduler_id: str | None = None
) -> ClaimResult:
    """Move up to ``limit`` pending jobs, oldest first, to queued (or failed when unusable).

    One transaction: rows are locked with ``FOR UPDATE SKIP LOCKED`` (two sensors never claim the
    same row), checked (video ID derived when missing, options, stage, source), then updated. A
    claimed row's ``attempts`` is bumped, so its run key names a new attempt. A row that cannot be
    checked at all (options no decoder accepts, a check that raised) fails with the reason like
    any other bad row: one row never stops the rows behind it.

    Args:
        db: The metadata database.
        limit: Most rows to claim (the caller's per-tick cap and backpressure headroom).
        policy: What sources and callback URLs may point at (see :func:`source_problem`); None
            checks only the source's scheme and that a local file exists.
        scheduler_id: The Dagster instance whose sensor claims the rows; recorded on each queued
            row, so only that instance re-requests or sweeps it.

    Returns:
        The queued and the rejected jobs.
    """
    if limit <= 0:
        return ClaimResult([], [])
    queued: list[Job] = []
    rejected: list[Job] = []
    with db.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"""SELECT id, video_id, source_uri, options::text AS options, from_stage, source_kind, callback_url
                FROM {JOBS_TABLE}
                WHERE status = 'pending' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
            (limit,),
        ).fetchall()
        for row in rows:
            video_id, problem = _intake_check(row, policy)
            if problem is None:
                updated = cursor.execute(
                    f"""UPDATE {JOBS_TABLE}
                        SET status = 'queued', video_id = %s, attempts = attempts + 1, run_id = NULL, warnings = NULL,
                            scheduler_id = %s, queued_at = now(), started_at = NULL, finished_at = NULL,
                            updated_at = now()
                        WHERE id = %s RETURNING {_COLUMNS}""",
                    (video_id, scheduler_id, row["id"]),
                ).fetchone()
                assert updated is not None
                queued.append(_job_from_row(updated))
            else:
                updated = cursor.execute(
                    f"""UPDATE {JOBS_TABLE}
                        SET status = 'failed', video_id = %s, error = %s, failed_step = 'intake',
                            transient = false, finished_at = now(), updated_at = now()
                        WHERE id = %s RETURNING {_COLUMNS}""",
                    (
                        video_id if video_id and _safe(video_id) else None,
                        storable_text(f"rejected at intake: {problem}"),
                        row["id"],
                    ),
                ).fetchone()
                assert updated is not None
                rejected.append(_job_from_row(updated))
    return ClaimResult(queued, rejected)


def _intake_check(row: Mapping[str, Any], policy: SourcePolicy | None) -> tuple[str | None, str | None]:
    """``(video ID, None)`` for a pending row that can run, ``(video ID or None, reason)`` otherwise.

    Never raises for what a row holds: a check that fails unexpectedly is the row's problem too
    (logged with its traceback), not the tick's.
    """
    video_id: str | None = row["video_id"]
    try:
        video_id = _checked_video_id(row["video_id"], row["source_uri"])
        options, unreadable = _decoded_column(row["options"], "options")
        if unreadable is not None:
            return video_id, unreadable
        validate_options(options if options is not None else {})
        _checked_stage(row["from_stage"])
        problem = source_problem(row["source_uri"], source_kind=row["source_kind"], policy=policy)
        if problem is None and policy is not None:
            problem = policy.callback_problem(row["callback_url"])
        return video_id, problem
    except (JobMessageError, InvalidVideoIdError) as error:
        return video_id, str(error)
    except Exception as error:  # a hostile row must not stop the rows behind it
        logger.exception("job %s could not be checked at intake", row["id"])
        return (
            video_id,
            f"the row could not be checked ({type(error).__name__}: {str(error)[:_REASON_CHARS]})",
        )


def _safe(video_id: str) -> bool:
    try:
        validate_video_id(video_id)
    except InvalidVideoIdError:
        return False
    return True


def queued_jobs_without_run(db: Database, limit: int, *, scheduler_id: str | None = None) -> list[Job]:
    """Queued jobs no run has claimed yet (``run_id`` NULL), oldest first.

    After a crash between claiming rows and Dagster creating their runs, these are the jobs
    whose run requests must be sent again (the run key makes a resend harmless). With
    ``scheduler_id``, only the jobs that instance queued: another instance's runs are invisible
    here, so "no run yet" cannot be judged for its jobs.
    """
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"""SELECT {_COLUMNS} FROM {JOBS_TABLE}
                WHERE status = 'queued' AND run_id IS NULL
                      AND (%(scheduler)s::text IS NULL OR scheduler_id = %(scheduler)s)
                ORDER BY id LIMIT %(limit)s""",
            {"scheduler": scheduler_id, "limit": limit},
        ).fetchall()
    return [_job_from_row(row) for row in rows]


def active_jobs(
    db: Database, limit: int, *, scheduler_id: str | None = None, include_unowned: bool = False
) -> list[Job]:
    """Queued or running jobs, least recently updated first: what the sweeper checks.

    With ``scheduler_id``, only the jobs that Dagster instance queued (whose runs it can see),
    plus, with ``include_unowned``, those queued without a scheduler (before schema version 5, or
    by a direct :func:`claim_pending_jobs` call).
    """
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"""SELECT {_COLUMNS} FROM {JOBS_TABLE}
                WHERE status IN ('queued', 'running')
                      AND (%(scheduler)s::text IS NULL OR scheduler_id = %(scheduler)s
                           OR (%(unowned)s AND scheduler_id IS NULL))
                ORDER BY updated_at LIMIT %(limit)s""",
            {"scheduler": scheduler_id, "unowned": include_unowned, "limit": limit},
        ).fetchall()
    return [_job_from_row(row) for row in rows]


# --------------------------------------------------------------------------------------------
# Run write-back (the run itself, the run status sensors, the sweeper)


def link_run(db: Database, job_id: int, attempt: int, run_id: str) -> bool:
    """Remember which run serves a queued attempt (before it starts). Returns whether it changed."""
    with db.connection() as conn:
        cursor = conn.execute(
            f"""UPDATE {JOBS_TABLE} SET run_id = %s, updated_at = now()
                WHERE id = %s AND attempts = %s AND status = 'queued' AND run_id IS NULL""",
            (run_id, job_id, attempt),
        )
        return cursor.rowcount > 0


def mark_running(
    db: Database, job_id: int, attempt: int, run_id: str, *, parent_run_id: str | None = None
) -> str | None:
    """The run of ``attempt`` started: queued → running, with its run ID.

    Idempotent. A job cancelled meanwhile stays cancelled: the caller should stop the run. A
    re-execution (from the UI) of the job's failed or cancelled run, ``parent_run_id``, takes the
    job over as a new attempt: that is how re-executing a run re-queues its job.

    Returns:
        The job's status after the call (None when the job does not exist).
    """
    with db.connection() as conn:
        row = conn.execute(
            f"""UPDATE {JOBS_TABLE}
                SET status = 'running', run_id = %s, started_at = COALESCE(started_at, now()), updated_at = now()
                WHERE id = %s AND attempts = %s AND status IN ('queued', 'running')
                      AND (run_id IS NULL OR run_id = %s)
                RETURNING status""",
            (run_id, job_id, attempt, run_id),
        ).fetchone()
        if row is None and parent_run_id is not None:
            row = conn.execute(
                f"""UPDATE {JOBS_TABLE}
                    SET status = 'running', run_id = %s, attempts = attempts + 1, retry_base = attempts,
                        warnings = NULL, error = NULL, failed_step = NULL, transient = NULL, started_at = now(),
                        finished_at = NULL, updated_at = now()
                    WHERE id = %s AND status IN ('failed', 'cancelled') AND run_id = %s
                    RETURNING status""",
                (run_id, job_id, parent_run_id),
            ).fetchone()
        if row is not None:
            return str(row[0])
        current = conn.execute(f"SELECT status FROM {JOBS_TABLE} WHERE id = %s", (job_id,)).fetchone()
    return None if current is None else str(current[0])


def mark_succeeded(
    db: Database,
    job_id: int,
    attempt: int,
    run_id: str,
    step_seconds: Mapping[str, float] | None = None,
) -> bool:
    """The run of ``attempt`` succeeded. Idempotent; later calls may add step durations.

    Returns:
        True when this call moved the job to succeeded.
    """
    durations = Jsonb({k: round(float(v), 3) for k, v in step_seconds.items()}) if step_seconds else None
    with db.connection() as conn:
        cursor = conn.execute(
            f"""UPDATE {JOBS_TABLE}
                SET status = 'succeeded', run_id = %s, error = NULL, failed_step = NULL, transient = NULL,
                    step_seconds = COALESCE(%s, step_seconds), started_at = COALESCE(started_at, now()),
                    finished_at = COALESCE(finished_at, now()), updated_at = now()
                WHERE id = %s AND ((attempts = %s AND (run_id IS NULL OR run_id = %s)) OR run_id = %s)
                      AND (status IN ('queued', 'running') OR (status = 'succeeded' AND %s::jsonb IS NOT NULL))
                """,
            (run_id, durations, job_id, attempt, run_id, run_id, durations),
        )
        return cursor.rowcount > 0


def add_job_warning(db: Database, job_id: int, attempt: int, run_id: str, step: str, warning: str) -> bool:
    """Record that ``step`` of this run processed less than all of its input (the job may still succeed).

    Idempotent: a line already recorded (a retried step) is not added again. Only the current
    attempt's run writes; a later attempt starts with no warnings.

    Returns:
        True when the job row holds the line after the call.
    """
    line = f"{step}: {' '.join(warning.split())}"[:2000]
    with db.connection() as conn:
        cursor = conn.execute(
            f"""UPDATE {JOBS_TABLE}
                SET warnings = CASE
                        WHEN warnings IS NULL THEN %s
                        WHEN strpos(E'\\n' || warnings || E'\\n', E'\\n' || %s || E'\\n') > 0 THEN warnings
                        ELSE warnings || E'\\n' || %s END,
                    updated_at = now()
                WHERE id = %s AND attempts = %s AND (run_id IS NULL OR run_id = %s)""",
            (line, line, line, job_id, attempt, run_id),
        )
        return cursor.rowcount > 0


def mark_failed(
    db: Database,
    job_id: int,
    attempt: int,
    run_id: str | None,
    *,
    error: str,
    failed_step: str | None,
    transient: bool,
    max_attempts: int,
) -> str | None:
    """The run of ``attempt`` failed (or vanished). Idempotent.

    A transient failure goes back to pending while fewer than ``max_attempts`` automatic attempts
    were made since the job was last (re)queued by hand; bad input fails for good.

    Args:
        db: The metadata database.
        job_id: The job.
        attempt: The attempt the failing run belonged to; other attempts are not touched.
        run_id: The failing run, when known.
        error: What went wrong, readable.
        failed_step: The step (asset) that failed, when known.
        transient: Whether trying again may help.
        max_attempts: ``WORKER_MAX_ATTEMPTS``.

    Returns:
        The new status (``pending`` for a retry, ``failed``), or None when nothing changed.
    """
    with db.connection() as conn:
        row = conn.execute(
            f"""UPDATE {JOBS_TABLE}
                SET status = CASE WHEN %s AND attempts - retry_base < %s THEN 'pending' ELSE 'failed' END,
                    run_id = COALESCE(%s, run_id), error = %s, failed_step = %s, transient = %s,
                    finished_at = now(), updated_at = now()
                WHERE id = %s AND status IN ('queued', 'running')
                      AND ((attempts = %s AND (run_id IS NULL OR %s::text IS NULL OR run_id = %s))
                           OR run_id = %s)
                RETURNING status""",
            (
                transient,
                max_attempts,
                run_id,
                error[:8000],
                failed_step,
                transient,
                job_id,
                attempt,
                run_id,
                run_id,
                run_id,
            ),
        ).fetchone()
    if row is not None and row[0] == PENDING:
        logger.warning("job %d attempt %d failed (%s); it will be tried again", job_id, attempt, error[:200])
    return None if row is None else str(row[0])


def mark_run_cancelled(db: Database, job_id: int, attempt: int, run_id: str) -> bool:
    """The run of ``attempt`` was cancelled (in the UI, or by ``videoqa cancel``)."""
    with db.connection() as conn:
        cursor = conn.execute(
            f"""UPDATE {JOBS_TABLE}
                SET status = 'cancelled', run_id = %s, finished_at = now(), updated_at = now(),
                    error = COALESCE(error, 'run was cancelled')
                WHERE id = %s AND status IN ('queued', 'running')
                      AND ((attempts = %s AND (run_id IS NULL OR run_id = %s)) OR run_id = %s)""",
            (run_id, job_id, attempt, run_id, run_id),
        )
        return cursor.rowcount > 0


# --------------------------------------------------------------------------------------------
# Operator actions


def requeue_job(db: Database, job_id: int, *, force: bool = False) -> Job:
    """Put a failed or cancelled job back to pending, with a fresh budget of automatic attempts.

    Args:
        db: The metadata database.
        job_id: The job.
        force: Also requeue a succeeded job (reprocess it as it was submitted).

    Returns:
        The job after the change.

    Raises:
        JobNotFoundError: no such job.
        JobStateError: the job is pending, queued or running (or succeeded without ``force``).
    """
    allowed = (FAILED, CANCELLED, SUCCEEDED) if force else (FAILED, CANCELLED)
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            f"""UPDATE {JOBS_TABLE}
                SET status = 'pending', retry_base = attempts, error = NULL, failed_step = NULL,
                    transient = NULL, finished_at = NULL, updated_at = now()
                WHERE id = %s AND status = ANY(%s) AND source_uri <> ''
                RETURNING {_COLUMNS}""",
            (job_id, list(allowed)),
        ).fetchone()
    if row is not None:
        return _job_from_row(row)
    job = get_job(db, job_id)
    if not job.source_uri:
        raise JobStateError(f"job {job_id} has no source (it was an undecodable message): submit it again")
    hint = " (use --force to process it again)" if job.status == SUCCEEDED else ""
    raise JobStateError(f"job {job_id} is {job.status}: only failed or cancelled jobs can be requeued{hint}")


def cancel_job(db: Database, job_id: int) -> Job:
    """Cancel a pending, queued or running job. The caller terminates its run, if any.

    Raises:
        JobNotFoundError: no such job.
        JobStateError: the job already finished.
    """
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        row = cursor.execute(
            f"""UPDATE {JOBS_TABLE}
                SET status = 'cancelled', error = 'cancelled by an operator', finished_at = now(),
                    updated_at = now()
                WHERE id = %s AND status IN ('pending', 'queued', 'running')
                RETURNING {_COLUMNS}""",
            (job_id,),
        ).fetchone()
    if row is not None:
        return _job_from_row(row)
    job = get_job(db, job_id)
    raise JobStateError(f"job {job_id} already {job.status}: nothing to cancel")


# --------------------------------------------------------------------------------------------
# Which source a video ID stands for


def register_source(db: Database, video_id: str, source_uri: str) -> None:
    """Remember the source of ``video_id`` for runs started without a job (``videoqa process``)."""
    with db.connection() as conn:
        conn.execute(
            """
            INSERT INTO videoqa_video_sources (video_id, source_uri) VALUES (%s, %s)
            ON CONFLICT (video_id) DO UPDATE SET source_uri = EXCLUDED.source_uri, registered_at = now()
            """,
            (video_id, source_uri),
        )


def lookup_source(db: Database, video_id: str) -> str | None:
    """The newest known source of ``video_id``: its latest job's, or its latest registration's."""
    with db.connection() as conn:
        row = conn.execute(
            f"""
            SELECT source_uri FROM (
                (SELECT source_uri, created_at AS at FROM {JOBS_TABLE}
                 WHERE video_id = %s AND source_uri <> '' ORDER BY id DESC LIMIT 1)
                UNION ALL
                (SELECT source_uri, registered_at AS at FROM videoqa_video_sources WHERE video_id = %s)
            ) AS known ORDER BY at DESC LIMIT 1
            """,
            (video_id, video_id),
        ).fetchone()
    return None if row is None else str(row[0])


def jobs_for_video(db: Database, video_id: str, limit: int = 20) -> Sequence[Job]:
    """The latest jobs of one video, newest first."""
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"SELECT {_COLUMNS} FROM {JOBS_TABLE} WHERE video_id = %s ORDER BY id DESC LIMIT %s",
            (video_id, limit),
        ).fetchall()
    return [_job_from_row(row) for row in rows]


def videos_with_active_jobs(db: Database, video_ids: Sequence[str]) -> set[str]:
    """Which of ``video_ids`` have a job pending, queued or running (one probe of the
    ``(video_id, id)`` index per video): videos the partition working set must keep."""
    if not video_ids:
        return set()
    with db.connection() as conn:
        rows = conn.execute(
            f"""SELECT DISTINCT video_id FROM {JOBS_TABLE}
                WHERE video_id = ANY(%s) AND status IN ('pending', 'queued', 'running')""",
            (list(video_ids),),
        ).fetchall()
    return {str(row[0]) for row in rows}


def batch_jobs(
    db: Database, *, source_kind: str, batch: str, run_id: str, after_id: int, limit: int
) -> list[Job]:
    """The jobs of ``batch`` that ``run_id`` still has to process, by ID after ``after_id``."""
    with db.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"""SELECT {_COLUMNS} FROM {JOBS_TABLE}
                WHERE source_kind = %s AND starts_with(external_id, %s || ':') AND status = 'running'
                      AND run_id = %s AND id > %s
                ORDER BY id LIMIT %s""",
            (source_kind, batch, run_id, after_id, limit),
        ).fetchall()
    return [_job_from_row(row) for row in rows]

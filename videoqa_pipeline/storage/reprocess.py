"""Choosing a set of videos to process again, and queuing them as jobs in one statement.

A library that outgrew Dagster's partition working set (see ``defs/working_set.py``) is still
re-processed through the ledger: every video it knows has jobs, and a job for a retired video
brings its partition back. A selection is resolved and queued by PostgreSQL itself
(``INSERT ... SELECT``), one pass over the ledger whatever the library's size, with each job's
external ID made of the batch name and the video ID, so queuing the same batch again (a re-executed
launch, a retried command) adds nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from videoqa_pipeline.storage.database import Database

#: The latest job of every video the ledger knows, with the filters of a selection applied; a video
#: processed without a job (``videoqa process``, ``videoqa demo``) counts with its registered source,
#: finished when it was registered. A video whose latest job is still pending, queued or running is
#: left out: it is being processed now.
_SELECTED = """
SELECT latest.video_id, latest.source_uri FROM (
    SELECT DISTINCT ON (video_id) video_id, source_uri, finished_at, status FROM (
        SELECT id, video_id, source_uri, finished_at, status
        FROM videoqa_jobs
        WHERE video_id IS NOT NULL AND (%(ids)s::text[] IS NULL OR video_id = ANY(%(ids)s))
        UNION ALL
        SELECT 0, video_id, source_uri, registered_at, 'succeeded'
        FROM videoqa_video_sources
        WHERE %(ids)s::text[] IS NULL OR video_id = ANY(%(ids)s)
    ) AS known
    ORDER BY video_id, id DESC
) AS latest
WHERE latest.status NOT IN ('pending', 'queued', 'running')
  AND (%(prefix)s::text IS NULL OR starts_with(latest.source_uri, %(prefix)s))
  AND (%(after)s::timestamptz IS NULL OR latest.finished_at >= %(after)s)
  AND (%(before)s::timestamptz IS NULL OR latest.finished_at < %(before)s)
  AND (%(model)s::text IS NULL OR EXISTS (
        SELECT 1 FROM videoqa_embeddings AS e
        WHERE e.video_id = latest.video_id AND e.model <> %(model)s))
"""


def _storable(text: str) -> bool:
    """Whether PostgreSQL can compare ``text`` at all (no NUL, valid UTF-8)."""
    if "\0" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SelectionError(ValueError):
    """A selection that names nothing, or would reach the metadata tables where they are not."""


@dataclass(frozen=True)
class VideoSelection:
    """Which videos to process again; every given filter must hold (they combine with AND).

    Attributes:
        video_ids: Only these videos.
        source_prefix: Only videos whose source starts with this (a collection: a bucket folder,
            a directory).
        finished_after: Only videos whose latest job finished at or after this moment.
        finished_before: Only videos whose latest job finished before this moment.
        embedding_model_other_than: Only videos with stored vectors of another embedding model
            (after changing ``VIDEOQA_EMBED_MODEL``); needs the metadata in PostgreSQL.
        every_video: Select the whole library when no filter is given (never implied).
    """

    video_ids: tuple[str, ...] = ()
    source_prefix: str | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None
    embedding_model_other_than: str | None = None
    every_video: bool = False

    def check(self) -> None:
        """Refuse a selection that names no filter (unless ``every_video``) or an empty window."""
        filters = (
            self.video_ids,
            self.source_prefix,
            self.finished_after,
            self.finished_before,
            self.embedding_model_other_than,
        )
        if not self.every_video and not any(value for value in filters):
            raise SelectionError(
                "name the videos to process again (video IDs, a source prefix, a time window or an "
                "embedding model), or say every video explicitly"
            )
        for name, text in (("source prefix", self.source_prefix), *(("video ID", v) for v in self.video_ids)):
            if text is not None and not _storable(text):
                raise SelectionError(
                    f"the {name} {text!r} holds a NUL or a lone surrogate, which no video has"
                )
        if self.finished_after and self.finished_before and self.finished_after >= self.finished_before:
            raise SelectionError(
                f"the window is empty: {self.finished_after.isoformat()} is not before "
                f"{self.finished_before.isoformat()}"
            )

    def parameters(self) -> dict[str, Any]:
        """The query parameters of :data:`_SELECTED`."""
        return {
            "ids": list(self.video_ids) or None,
            "prefix": self.source_prefix or None,
            "after": self.finished_after,
            "before": self.finished_before,
            "model": self.embedding_model_other_than or None,
        }


def count_selected(db: Database, selection: VideoSelection) -> int:
    """How many videos ``selection`` names (a dry run)."""
    selection.check()
    with db.connection() as conn:
        row = conn.execute(
            f"SELECT count(*) FROM ({_SELECTED}) AS selected", selection.parameters()
        ).fetchone()
    return int(row[0]) if row else 0


def queue_selected(
    db: Database,
    selection: VideoSelection,
    *,
    from_stage: str | None,
    batch: str,
    source_kind: str,
) -> tuple[int, int]:
    """Queue one pending job per selected video; returns (selected, newly queued).

    Args:
        db: The metadata database.
        selection: The videos.
        from_stage: Re-materialize this stage and everything downstream (None: every stage).
        batch: Names this submission: with the video ID, each job's external ID.
        source_kind: ``cli``, ``ui`` or ``api``: who asked.

    Returns:
        How many videos were selected, and how many of them got a new job (the rest were queued
        by an earlier submission of the same batch).
    """
    selection.check()
    params = {
        **selection.parameters(),
        "batch": batch,
        "kind": source_kind,
        "stage": from_stage,
    }
    with db.connection() as conn:
        selected = conn.execute(
            f"""WITH selected AS ({_SELECTED}),
                inserted AS (
                    INSERT INTO videoqa_jobs (source_uri, video_id, source_kind, external_id, from_stage)
                    SELECT source_uri, video_id, %(kind)s, %(batch)s || ':' || video_id, %(stage)s
                    FROM selected
                    ON CONFLICT (source_kind, external_id) DO NOTHING
                    RETURNING 1)
                SELECT (SELECT count(*) FROM selected), (SELECT count(*) FROM inserted)""",
            params,
        ).fetchone()
    return (int(selected[0]), int(selected[1])) if selected else (0, 0)


def claim_batch(
    db: Database,
    selection: VideoSelection,
    *,
    batch: str,
    stage: str,
    run_id: str,
    scheduler_id: str,
    source_kind: str,
) -> int:
    """Record one running job per selected video for a run that processes the batch itself.

    The jobs are never pending, so the job sensor leaves them to ``run_id``; they carry the
    scheduler's ID, so if the run dies its sweeper fails them as transient and they come back as
    ordinary pending jobs. A re-execution of the same launch (same ``batch``, a new ``run_id``)
    takes over the batch's jobs still running and adds nothing twice.

    Returns:
        How many jobs this call added.
    """
    selection.check()
    params = {
        **selection.parameters(),
        "batch": batch,
        "kind": source_kind,
        "stage": stage,
        "run": run_id,
        "scheduler": scheduler_id,
    }
    with db.connection() as conn:
        row = conn.execute(
            f"""WITH selected AS ({_SELECTED}),
                inserted AS (
                    INSERT INTO videoqa_jobs (source_uri, video_id, source_kind, external_id, from_stage, status,
                                              attempts, run_id, scheduler_id, queued_at, started_at)
                    SELECT source_uri, video_id, %(kind)s, %(batch)s || ':' || video_id, %(stage)s, 'running',
                           1, %(run)s, %(scheduler)s, now(), now()
                    FROM selected
                    ON CONFLICT (source_kind, external_id) DO NOTHING
                    RETURNING 1)
                SELECT count(*) FROM inserted""",
            params,
        ).fetchone()
        conn.execute(
            """UPDATE videoqa_jobs SET run_id = %(run)s, scheduler_id = %(scheduler)s, updated_at = now()
               WHERE source_kind = %(kind)s AND starts_with(external_id, %(batch)s || ':')
                     AND status = 'running' AND run_id <> %(run)s""",
            params,
        )
    return int(row[0]) if row else 0

"""Versioned schema migrations of the metadata database.

Each :class:`Migration` has a number and is applied once, in order, inside the transaction that
holds the schema advisory lock (see :meth:`Database.ensure_schema`); applied versions are recorded
in ``videoqa_schema_migrations``. Migrations are append-only: never edit one that has shipped,
add the next number instead (and update :mod:`videoqa_pipeline.storage.schema` to match; the test
suite compares the live catalog with the specs).

Version 1 creates the pipeline's tables. The embedding column is a dimension-less pgvector
``vector`` when the extension is installed, else ``real[]``; a later migration can add per-dimension
HNSW indexes (``CREATE INDEX ... ((embedding::vector(384))) WHERE dimension = 384``). A generated
``search_tsv`` column with a GIN index already backs full-text search over embedded texts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

logger = logging.getLogger(__name__)

MIGRATIONS_TABLE = "videoqa_schema_migrations"

#: Any constant shared by all processes; identifies the schema lock among advisory locks.
SCHEMA_LOCK_KEY = 0x76716D67  # "vqmg"


@dataclass(frozen=True)
class MigrationContext:
    """Facts a migration may depend on.

    Attributes:
        has_pgvector: The ``vector`` extension is installed in this database.
    """

    has_pgvector: bool


@dataclass(frozen=True)
class Migration:
    """One schema change.

    Attributes:
        version: Strictly increasing number, recorded once applied.
        description: One line, stored with the version.
        apply: Runs the change on a connection inside the migration transaction.
    """

    version: int
    description: str
    apply: Callable[[psycopg.Connection, MigrationContext], None]


#: Version 1's tables of the media stages (the embeddings table depends on pgvector: below).
_STAGE_TABLES_DDL = (
    """
    CREATE TABLE videoqa_videos (
        video_id text NOT NULL,
        source_uri text NOT NULL,
        blob_key text NOT NULL,
        size_bytes bigint NOT NULL,
        sha256 text,
        duration_seconds double precision,
        container text,
        video_codec text,
        width integer,
        height integer,
        fps double precision,
        frame_count bigint,
        vfr boolean,
        rotation integer,
        has_audio boolean,
        audio_codec text,
        audio_sample_rate integer,
        audio_channels integer,
        PRIMARY KEY (video_id)
    )""",
    """
    CREATE TABLE videoqa_normalized_media (
        video_id text NOT NULL,
        video_blob_key text NOT NULL,
        audio_blob_key text,
        width integer,
        height integer,
        fps double precision,
        duration_seconds double precision,
        video_size_bytes bigint,
        audio_size_bytes bigint,
        PRIMARY KEY (video_id)
    )""",
    """
    CREATE TABLE videoqa_transcript_segments (
        video_id text NOT NULL,
        segment_index integer NOT NULL,
        start_seconds double precision NOT NULL,
        end_seconds double precision NOT NULL,
        text text NOT NULL,
        words jsonb,
        language text,
        model text NOT NULL,
        PRIMARY KEY (video_id, segment_index)
    )""",
    """
    CREATE TABLE videoqa_scenes (
        video_id text NOT NULL,
        scene_index integer NOT NULL,
        start_seconds double precision NOT NULL,
        end_seconds double precision NOT NULL,
        start_frame integer NOT NULL,
        end_frame integer NOT NULL,
        PRIMARY KEY (video_id, scene_index)
    )""",
    """
    CREATE TABLE videoqa_keyframes (
        video_id text NOT NULL,
        scene_index integer NOT NULL,
        timestamp_seconds double precision NOT NULL,
        blob_key text NOT NULL,
        width integer NOT NULL,
        height integer NOT NULL,
        size_bytes integer NOT NULL,
        sharpness double precision,
        PRIMARY KEY (video_id, scene_index)
    )""",
    """
    CREATE TABLE videoqa_frame_analyses (
        video_id text NOT NULL,
        scene_index integer NOT NULL,
        timestamp_seconds double precision NOT NULL,
        caption text,
        labels text[],
        ocr_text text,
        model text NOT NULL,
        PRIMARY KEY (video_id, scene_index)
    )""",
)


def _embeddings_ddl(has_pgvector: bool) -> list[str]:
    """Version 1's embeddings table: a pgvector column, or ``real[]`` where the extension is missing."""
    if has_pgvector:
        embedding_type = "vector"
        dimension_check = "vector_dims(embedding) = dimension"
    else:
        embedding_type = "real[]"
        dimension_check = "array_ndims(embedding) = 1 AND array_length(embedding, 1) = dimension"
    return [
        f"""
        CREATE TABLE videoqa_embeddings (
            video_id text NOT NULL,
            item_index integer NOT NULL,
            kind text NOT NULL CHECK (kind IN ('transcript', 'frame')),
            start_seconds double precision NOT NULL,
            end_seconds double precision NOT NULL,
            text text NOT NULL,
            model text NOT NULL,
            dimension integer NOT NULL CHECK (dimension > 0),
            embedding {embedding_type} NOT NULL CHECK ({dimension_check}),
            search_tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED,
            PRIMARY KEY (video_id, item_index)
        )""",
        "CREATE INDEX videoqa_embeddings_search_tsv_idx ON videoqa_embeddings USING gin (search_tsv)",
        "CREATE INDEX videoqa_embeddings_model_dimension_idx ON videoqa_embeddings (model, dimension)",
    ]


def _create_pipeline_tables(conn: psycopg.Connection, context: MigrationContext) -> None:
    for statement in (*_STAGE_TABLES_DDL, *_embeddings_ddl(context.has_pgvector)):
        conn.execute(statement)


def _create_jobs_ledger(conn: psycopg.Connection, context: MigrationContext) -> None:
    """The job ledger (see :mod:`videoqa_pipeline.storage.ledger`) and the legacy source registry.

    A producer's plain ``INSERT INTO videoqa_jobs (source_uri) VALUES (...)`` is a complete job:
    every other column has a default, and the job sensor derives a missing ``video_id``. The
    sensor's query (``WHERE status = 'pending' ORDER BY id LIMIT n``) walks ``(status, id)``.
    """
    statements = [
        """
        CREATE TABLE videoqa_jobs (
            id bigserial PRIMARY KEY,
            video_id text,
            source_uri text NOT NULL,
            options jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(options) = 'object'),
            from_stage text,
            source_kind text NOT NULL DEFAULT 'postgres',
            external_id text,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'queued', 'running', 'succeeded', 'failed', 'cancelled')),
            attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            retry_base integer NOT NULL DEFAULT 0,
            run_id text,
            error text,
            failed_step text,
            transient boolean,
            step_seconds jsonb,
            raw_body text,
            callback_url text,
            created_at timestamptz NOT NULL DEFAULT now(),
            queued_at timestamptz,
            started_at timestamptz,
            finished_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (source_kind, external_id)
        )""",
        "CREATE INDEX videoqa_jobs_status_id_idx ON videoqa_jobs (status, id)",
        "CREATE INDEX videoqa_jobs_video_id_idx ON videoqa_jobs (video_id, id)",
        "CREATE INDEX videoqa_jobs_run_id_idx ON videoqa_jobs (run_id) WHERE run_id IS NOT NULL",
        """
        CREATE TABLE IF NOT EXISTS videoqa_video_sources (
            video_id text PRIMARY KEY,
            source_uri text NOT NULL,
            registered_at timestamptz NOT NULL DEFAULT now()
        )""",
    ]
    for statement in statements:
        conn.execute(statement)


def _add_job_callbacks(conn: psycopg.Connection, context: MigrationContext) -> None:
    """Completion-callback bookkeeping on the job row (see :mod:`videoqa_pipeline.service.callbacks`).

    ``callback_outcome_at`` is the ``finished_at`` the other columns refer to, so a requeued job that
    finishes again owes a new callback. The two partial indexes serve the deliverer's two questions:
    which outcomes finished recently, and which retries are due.
    """
    statements = [
        """
        ALTER TABLE videoqa_jobs
            ADD COLUMN callback_state text
                CHECK (callback_state IN ('retrying', 'delivered', 'gave_up')),
            ADD COLUMN callback_attempts integer NOT NULL DEFAULT 0,
            ADD COLUMN callback_last_error text,
            ADD COLUMN callback_next_at timestamptz,
            ADD COLUMN callback_outcome_at timestamptz,
            ADD COLUMN callback_delivered_at timestamptz""",
        """CREATE INDEX videoqa_jobs_finished_idx ON videoqa_jobs (finished_at)
           WHERE status IN ('succeeded', 'failed', 'cancelled')""",
        """CREATE INDEX videoqa_jobs_callback_due_idx ON videoqa_jobs (callback_next_at)
           WHERE callback_state = 'retrying'""",
    ]
    for statement in statements:
        conn.execute(statement)


#: Embedding sizes that get an HNSW index: the offline all-MiniLM model and OpenAI's small model.
#: pgvector's HNSW takes at most 2,000 dimensions; larger vectors are searched exactly.
HNSW_INDEXED_DIMENSIONS = (384, 1536)


def hnsw_index_name(dimension: int) -> str:
    """Name of the HNSW expression index over vectors of ``dimension`` values."""
    return f"videoqa_embeddings_hnsw_{dimension}_idx"


def _add_vector_indexes(conn: psycopg.Connection, context: MigrationContext) -> None:
    """HNSW cosine indexes for search, one per common dimension (pgvector only).

    The column has no fixed dimension (several models may coexist), so each index is on the
    expression ``embedding::vector(N)`` restricted to ``dimension = N``; a query must use the same
    expression and predicate to be served by it (see :mod:`videoqa_pipeline.search.backends`).
    Without pgvector there is nothing to create: search falls back to exact numpy cosine.
    """
    if not context.has_pgvector:
        return
    for dimension in HNSW_INDEXED_DIMENSIONS:
        conn.execute(
            f"""CREATE INDEX {hnsw_index_name(dimension)} ON videoqa_embeddings
                USING hnsw ((embedding::vector({dimension})) vector_cosine_ops)
                WHERE dimension = {dimension}"""
        )


def _add_job_schedulers(conn: psycopg.Connection, context: MigrationContext) -> None:
    """Which Dagster instance schedules the ledger, and which one queued each job.

    A job's run lives in the run storage of the instance whose sensor requested it; another
    instance sharing the ledger (a failover, a second ``dagster dev`` by mistake) cannot see it.
    ``videoqa_jobs.scheduler_id`` records that instance for the current attempt, and
    ``videoqa_schedulers`` has one row per instance seen: its heartbeat, and which one holds the
    lease to take new jobs (at most one: a partial unique index). Rows queued before this
    migration have no scheduler; the lease holder adopts them (see ``storage/schedulers.py``).
    """
    statements = [
        "ALTER TABLE videoqa_jobs ADD COLUMN scheduler_id text",
        """
        CREATE TABLE videoqa_schedulers (
            instance_id text PRIMARY KEY,
            description text NOT NULL DEFAULT '',
            holds_lease boolean NOT NULL DEFAULT false,
            first_seen_at timestamptz NOT NULL DEFAULT now(),
            last_seen_at timestamptz NOT NULL DEFAULT now(),
            lease_since timestamptz
        )""",
        "CREATE UNIQUE INDEX videoqa_schedulers_one_lease_idx ON videoqa_schedulers ((true)) WHERE holds_lease",
    ]
    for statement in statements:
        conn.execute(statement)


def _add_job_warnings(conn: psycopg.Connection, context: MigrationContext) -> None:
    """What a succeeded job could not process: one line per step that processed less than all of
    its input (``normalized_video: audio undecodable from 12.0 s ...``), NULL when nothing was left
    out. Cleared when an attempt is queued; written by the run (``ledger.add_job_warning``)."""
    conn.execute("ALTER TABLE videoqa_jobs ADD COLUMN warnings text")


#: Rows per status in ``videoqa_job_counts``: writers add to the row of their own backend
#: (``pg_backend_pid() % JOB_COUNT_SHARDS``), so concurrent intake does not queue on one row.
JOB_COUNT_SHARDS = 16


def _add_job_counts(conn: psycopg.Connection, context: MigrationContext) -> None:
    """Jobs per status, kept exact by triggers, so status displays never count the ledger.

    ``SELECT status, count(*) ... GROUP BY status`` reads every row: 0.11-0.16 s at a million jobs, on
    every ``/stats``, ``/jobs/peek`` and ``videoqa status``. Producers write the ledger with plain
    SQL, so the counts are kept by statement-level triggers with transition tables (one upsert per
    statement and status, whatever the number of rows; an UPDATE that changes no status writes
    nothing), in the writer's transaction. A status's count is the sum of its shards; upserts go
    in (status, shard) order, so two writers never wait on each other's rows in opposite order.
    The ledger is locked against writes while the counts are first taken.
    """
    statements = [
        "LOCK TABLE videoqa_jobs IN SHARE ROW EXCLUSIVE MODE",
        """
        CREATE TABLE videoqa_job_counts (
            status text NOT NULL,
            shard integer NOT NULL,
            jobs bigint NOT NULL,
            PRIMARY KEY (status, shard)
        )""",
        """INSERT INTO videoqa_job_counts (status, shard, jobs)
           SELECT status, 0, count(*) FROM videoqa_jobs GROUP BY status""",
        f"""
        CREATE FUNCTION videoqa_job_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                DELETE FROM videoqa_job_counts;
            ELSIF TG_OP = 'INSERT' THEN
                INSERT INTO videoqa_job_counts AS counts (status, shard, jobs)
                SELECT status, pg_backend_pid() % {JOB_COUNT_SHARDS}, count(*) FROM new_rows
                GROUP BY status ORDER BY status
                ON CONFLICT (status, shard) DO UPDATE SET jobs = counts.jobs + EXCLUDED.jobs;
            ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO videoqa_job_counts AS counts (status, shard, jobs)
                SELECT status, pg_backend_pid() % {JOB_COUNT_SHARDS}, -count(*) FROM old_rows
                GROUP BY status ORDER BY status
                ON CONFLICT (status, shard) DO UPDATE SET jobs = counts.jobs + EXCLUDED.jobs;
            ELSE
                INSERT INTO videoqa_job_counts AS counts (status, shard, jobs)
                SELECT status, pg_backend_pid() % {JOB_COUNT_SHARDS}, sum(delta) FROM (
                    SELECT status, 1 AS delta FROM new_rows
                    UNION ALL
                    SELECT status, -1 FROM old_rows
                ) AS changes
                GROUP BY status HAVING sum(delta) <> 0 ORDER BY status
                ON CONFLICT (status, shard) DO UPDATE SET jobs = counts.jobs + EXCLUDED.jobs;
            END IF;
            RETURN NULL;
        END $$""",
    ]
    # A trigger may only name the transition tables its event has.
    statements += [
        """CREATE TRIGGER videoqa_job_counts_insert AFTER INSERT ON videoqa_jobs
           REFERENCING NEW TABLE AS new_rows
           FOR EACH STATEMENT EXECUTE FUNCTION videoqa_job_counts_apply()""",
        """CREATE TRIGGER videoqa_job_counts_update AFTER UPDATE ON videoqa_jobs
           REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
           FOR EACH STATEMENT EXECUTE FUNCTION videoqa_job_counts_apply()""",
        """CREATE TRIGGER videoqa_job_counts_delete AFTER DELETE ON videoqa_jobs
           REFERENCING OLD TABLE AS old_rows
           FOR EACH STATEMENT EXECUTE FUNCTION videoqa_job_counts_apply()""",
        """CREATE TRIGGER videoqa_job_counts_truncate AFTER TRUNCATE ON videoqa_jobs
           FOR EACH STATEMENT EXECUTE FUNCTION videoqa_job_counts_apply()""",
    ]
    for statement in statements:
        conn.execute(statement)


#: All migrations, in order. Append only.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "pipeline tables: videos, media, transcript, scenes, keyframes, analyses, embeddings",
        _create_pipeline_tables,
    ),
    Migration(2, "job ledger: videoqa_jobs, indexed on (status, id)", _create_jobs_ledger),
    Migration(3, "job completion callbacks: attempts, last error, next try", _add_job_callbacks),
    Migration(4, "search: HNSW cosine indexes on embeddings of 384 and 1536 dimensions", _add_vector_indexes),
    Migration(
        5,
        "job schedulers: the Dagster instance owning each job, one lease to take new jobs",
        _add_job_schedulers,
    ),
    Migration(6, "job warnings: what a succeeded job could not process", _add_job_warnings),
    Migration(7, "job counts per status, kept by triggers on the ledger", _add_job_counts),
)

CURRENT_SCHEMA_VERSION = MIGRATIONS[-1].version


def applied_versions(conn: psycopg.Connection) -> set[int]:
    """Versions recorded in ``videoqa_schema_migrations`` (empty when the table does not exist)."""
    exists = conn.execute("SELECT to_regclass(%s)", (MIGRATIONS_TABLE,)).fetchone()
    if exists is None or exists[0] is None:
        return set()
    return {row[0] for row in conn.execute(f"SELECT version FROM {MIGRATIONS_TABLE}")}


def apply_migrations(conn: psycopg.Connection, context: MigrationContext) -> list[int]:
    """Apply every migration not yet recorded. The caller holds the schema lock and a transaction.

    Args:
        conn: A connection inside a transaction.
        context: Facts the migrations depend on.

    Returns:
        The versions applied by this call (empty when the schema was current).
    """
    conn.execute(
        f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
            version integer PRIMARY KEY,
            description text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )"""
    )
    done = applied_versions(conn)
    newer = sorted(version for version in done if version > CURRENT_SCHEMA_VERSION)
    if newer:
        logger.warning(
            "The metadata database has schema versions %s, newer than this code knows (%d); "
            "upgrade videoqa-pipeline on this machine",
            newer,
            CURRENT_SCHEMA_VERSION,
        )
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        logger.info("Applying schema migration %d: %s", migration.version, migration.description)
        migration.apply(conn, context)
        conn.execute(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, description) VALUES (%s, %s)",
            (migration.version, migration.description),
        )
        applied.append(migration.version)
    return applied

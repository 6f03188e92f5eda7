"""Table specifications: the contract between the pipeline's assets and the metadata store.

One :class:`TableSpec` per table asset, keyed by **asset name** in :data:`TABLES`. A spec says
which columns a DataFrame handed to the IO manager must have, their SQL types and whether they
may be null. The same specs drive the Dagster column schema shown in the UI, the checks made
before writing, and the dtypes of frames read back, so those three never drift apart.

Conventions:

* Every table starts with ``video_id text NOT NULL``: tables are partitioned by video, and the
  partition key *is* the video ID. DataFrames exchanged with :mod:`videoqa_pipeline.storage.tables`
  do **not** carry that column: it is added on write (from the partition key) and dropped on read.
* The logical type ``vector`` is stored as a pgvector ``vector`` (no fixed dimension, so several
  embedding models can coexist) or, where the extension is missing, as ``real[]``. Either way a
  read returns one ``numpy.float32`` array per row.
* The actual DDL lives in versioned migrations (:mod:`videoqa_pipeline.storage.migrations`); a
  change here needs a new migration, which the test suite checks by comparing the live catalog to
  these specs.

No Dagster import here: non-Dagster code (the search service, the CLI) reads the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass

VIDEO_ID_COLUMN = "video_id"
VECTOR_TYPE = "vector"

#: SQL types a :class:`Column` may use. The storage code knows how to write and read each one.
SUPPORTED_SQL_TYPES = frozenset(
    {"text", "integer", "bigint", "double precision", "boolean", "jsonb", "text[]", VECTOR_TYPE}
)


@dataclass(frozen=True)
class Column:
    """One column of a metadata table.

    Attributes:
        name: Column name, also the DataFrame column name.
        sql_type: One of :data:`SUPPORTED_SQL_TYPES`.
        nullable: Whether NULL (None, NaN, pd.NA in the DataFrame) is allowed.
        description: Shown in the Dagster UI's column schema.
    """

    name: str
    sql_type: str
    nullable: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if self.sql_type not in SUPPORTED_SQL_TYPES:
            raise ValueError(
                f"column {self.name!r} has unsupported SQL type {self.sql_type!r}; "
                f"use one of {sorted(SUPPORTED_SQL_TYPES)}"
            )


@dataclass(frozen=True)
class TableSpec:
    """A metadata table: its name, columns (``video_id`` first), primary key and purpose.

    Attributes:
        name: SQL table name (``videoqa_...``).
        columns: All columns, ``video_id`` first.
        primary_key: Primary key columns, ``video_id`` first.
        description: What one row means; shown in the Dagster UI.
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    description: str

    def __post_init__(self) -> None:
        names = [column.name for column in self.columns]
        if not names or names[0] != VIDEO_ID_COLUMN:
            raise ValueError(f"table {self.name!r}: the first column must be {VIDEO_ID_COLUMN!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name!r}: duplicate column names in {names}")
        missing = [key for key in self.primary_key if key not in names]
        if missing or not self.primary_key or self.primary_key[0] != VIDEO_ID_COLUMN:
            raise ValueError(
                f"table {self.name!r}: primary key {self.primary_key} must start with "
                f"{VIDEO_ID_COLUMN!r} and name existing columns (unknown: {missing})"
            )

    @property
    def column_names(self) -> tuple[str, ...]:
        """All column names, ``video_id`` included, in table order."""
        return tuple(column.name for column in self.columns)

    @property
    def data_columns(self) -> tuple[Column, ...]:
        """The columns a DataFrame exchanged with the storage layer has (all but ``video_id``)."""
        return tuple(column for column in self.columns if column.name != VIDEO_ID_COLUMN)

    @property
    def data_column_names(self) -> tuple[str, ...]:
        """Names of :attr:`data_columns`, in table order."""
        return tuple(column.name for column in self.data_columns)

    def column(self, name: str) -> Column:
        """Return the column called ``name``.

        Raises:
            KeyError: the table has no such column.
        """
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"table {self.name!r} has no column {name!r}")


def _video_id() -> Column:
    return Column(
        VIDEO_ID_COLUMN, "text", nullable=False, description="Video ID (the Dagster partition key)."
    )


SOURCE_VIDEO = TableSpec(
    name="videoqa_videos",
    description="One row per video: where it came from, where the original is stored, and its probe facts.",
    primary_key=(VIDEO_ID_COLUMN,),
    columns=(
        _video_id(),
        Column("source_uri", "text", nullable=False, description="Where the video was fetched from."),
        Column("blob_key", "text", nullable=False, description="Blob key of the stored original."),
        Column("size_bytes", "bigint", nullable=False, description="Size of the original in bytes."),
        Column("sha256", "text", description="SHA-256 of the original, hex."),
        Column("duration_seconds", "double precision", description="Container duration."),
        Column("container", "text", description="Container format name (e.g. mov,mp4,m4a)."),
        Column("video_codec", "text", description="Codec of the first video stream."),
        Column("width", "integer", description="Display width in pixels (after rotation)."),
        Column("height", "integer", description="Display height in pixels (after rotation)."),
        Column("fps", "double precision", description="Average frame rate."),
        Column("frame_count", "bigint", description="Number of video frames, when known."),
        Column("vfr", "boolean", description="True when the frame rate is variable."),
        Column("rotation", "integer", description="Rotation in degrees from the display matrix."),
        Column("has_audio", "boolean", description="True when the video has an audio stream."),
        Column("audio_codec", "text", description="Codec of the first audio stream."),
        Column("audio_sample_rate", "integer", description="Audio sample rate in Hz."),
        Column("audio_channels", "integer", description="Number of audio channels."),
    ),
)

NORMALIZED_VIDEO = TableSpec(
    name="videoqa_normalized_media",
    description="One row per video: the normalized H.264 video and 16 kHz mono WAV (when it has audio).",
    primary_key=(VIDEO_ID_COLUMN,),
    columns=(
        _video_id(),
        Column("video_blob_key", "text", nullable=False, description="Blob key of the normalized video."),
        Column("audio_blob_key", "text", description="Blob key of the WAV; null when the video is silent."),
        Column("width", "integer", description="Width of the normalized video."),
        Column("height", "integer", description="Height of the normalized video."),
        Column("fps", "double precision", description="Frame rate of the normalized video."),
        Column("duration_seconds", "double precision", description="Duration of the normalized video."),
        Column("video_size_bytes", "bigint", description="Size of the normalized video in bytes."),
        Column("audio_size_bytes", "bigint", description="Size of the WAV in bytes; null without audio."),
    ),
)

TRANSCRIPT = TableSpec(
    name="videoqa_transcript_segments",
    description="One row per transcript segment.",
    primary_key=(VIDEO_ID_COLUMN, "segment_index"),
    columns=(
        _video_id(),
        Column("segment_index", "integer", nullable=False, description="0-based segment number."),
        Column("start_seconds", "double precision", nullable=False, description="Segment start."),
        Column("end_seconds", "double precision", nullable=False, description="Segment end."),
        Column("text", "text", nullable=False, description="Spoken text."),
        Column("words", "jsonb", description="Word timings: list of {start, end, text, probability}."),
        Column("language", "text", description="Detected or configured language code."),
        Column("model", "text", nullable=False, description="Speech-to-text model used."),
    ),
)

SCENES = TableSpec(
    name="videoqa_scenes",
    description="One row per detected scene (a video without cuts is one scene).",
    primary_key=(VIDEO_ID_COLUMN, "scene_index"),
    columns=(
        _video_id(),
        Column("scene_index", "integer", nullable=False, description="0-based scene number."),
        Column("start_seconds", "double precision", nullable=False, description="Scene start."),
        Column("end_seconds", "double precision", nullable=False, description="Scene end."),
        Column("start_frame", "integer", nullable=False, description="First frame of the scene."),
        Column("end_frame", "integer", nullable=False, description="Frame after the last one (exclusive)."),
    ),
)

KEYFRAMES = TableSpec(
    name="videoqa_keyframes",
    description="One row per selected scene: the keyframe picked for it, stored as a JPEG blob.",
    primary_key=(VIDEO_ID_COLUMN, "scene_index"),
    columns=(
        _video_id(),
        Column("scene_index", "integer", nullable=False, description="Scene the keyframe belongs to."),
        Column("timestamp_seconds", "double precision", nullable=False, description="Source timestamp."),
        Column("blob_key", "text", nullable=False, description="Blob key of the JPEG."),
        Column("width", "integer", nullable=False, description="JPEG width in pixels."),
        Column("height", "integer", nullable=False, description="JPEG height in pixels."),
        Column("size_bytes", "integer", nullable=False, description="JPEG size in bytes."),
        Column("sharpness", "double precision", description="Variance of the Laplacian, when measured."),
    ),
)

FRAME_ANALYSES = TableSpec(
    name="videoqa_frame_analyses",
    description="One row per analysed keyframe: caption, labels and OCR text.",
    primary_key=(VIDEO_ID_COLUMN, "scene_index"),
    columns=(
        _video_id(),
        Column("scene_index", "integer", nullable=False, description="Scene of the analysed keyframe."),
        Column("timestamp_seconds", "double precision", nullable=False, description="Source timestamp."),
        Column("caption", "text", description="Caption, when a vision model is configured."),
        Column("labels", "text[]", description="Labels / visual facts."),
        Column("ocr_text", "text", description="Text read from the frame."),
        Column("model", "text", nullable=False, description="Model(s) used for the analysis."),
    ),
)

EMBEDDINGS = TableSpec(
    name="videoqa_embeddings",
    description="One row per embedded item: a transcript chunk or a frame's text, with its vector.",
    primary_key=(VIDEO_ID_COLUMN, "item_index"),
    columns=(
        _video_id(),
        Column("item_index", "integer", nullable=False, description="0-based item number."),
        Column("kind", "text", nullable=False, description="'transcript' or 'frame'."),
        Column("start_seconds", "double precision", nullable=False, description="Start of the item."),
        Column("end_seconds", "double precision", nullable=False, description="End of the item."),
        Column("text", "text", nullable=False, description="The text that was embedded."),
        Column("model", "text", nullable=False, description="Embedding model."),
        Column("dimension", "integer", nullable=False, description="Length of the vector."),
        Column(
            "embedding",
            VECTOR_TYPE,
            nullable=False,
            description="pgvector vector (real[] without the extension); read back as float32 arrays.",
        ),
    ),
)

#: Table specs keyed by the name of the Dagster asset that produces them.
TABLES: dict[str, TableSpec] = {
    "source_video": SOURCE_VIDEO,
    "normalized_video": NORMALIZED_VIDEO,
    "transcript": TRANSCRIPT,
    "scenes": SCENES,
    "keyframes": KEYFRAMES,
    "frame_analyses": FRAME_ANALYSES,
    "embeddings": EMBEDDINGS,
}

#: The same specs keyed by SQL table name.
TABLES_BY_TABLE_NAME: dict[str, TableSpec] = {spec.name: spec for spec in TABLES.values()}

EMBEDDING_KINDS = ("transcript", "frame")


def spec_for_asset(asset_name: str) -> TableSpec:
    """Return the table spec of a table asset.

    Args:
        asset_name: The last component of the Dagster asset key (e.g. ``"scenes"``).

    Returns:
        The :class:`TableSpec` storing that asset.

    Raises:
        KeyError: the asset is not stored as a table; the message lists those that are.
    """
    try:
        return TABLES[asset_name]
    except KeyError:
        raise KeyError(
            f"asset {asset_name!r} has no metadata table; tables exist for: {', '.join(sorted(TABLES))}. "
            "Return a MaterializeResult (blobs only) or add a TableSpec and a migration."
        ) from None


#: The job ledger (not an asset table: no TableSpec). Created by migration 2; see ``storage/ledger.py``.
JOBS_TABLE = "videoqa_jobs"

#: The Dagster instances that schedule the ledger's jobs (migration 5; see ``storage/schedulers.py``).
SCHEDULERS_TABLE = "videoqa_schedulers"

#: Every status a job can have, in lifecycle order.
JOB_STATUSES = ("pending", "queued", "running", "succeeded", "failed", "cancelled")

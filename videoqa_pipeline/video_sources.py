"""Which source URI a video ID (partition key) stands for.

A partition key alone does not say where the video is, so every intake path (the CLI,
sensors, the webhook) records the mapping here before it launches a run; a run started
from the UI for a known video then finds its source again.
"""

from __future__ import annotations

from videoqa_pipeline.storage.database import Database

_DDL = """
CREATE TABLE IF NOT EXISTS videoqa_video_sources (
    video_id text PRIMARY KEY,
    source_uri text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
)
"""

SAMPLE_VIDEO_ID = "sample"


def register_source(database: Database, video_id: str, source_uri: str) -> None:
    """Remember (or update) the source of ``video_id``."""
    with database.connection() as connection:
        connection.execute(_DDL)
        connection.execute(
            """
            INSERT INTO videoqa_video_sources (video_id, source_uri) VALUES (%s, %s)
            ON CONFLICT (video_id) DO UPDATE SET source_uri = EXCLUDED.source_uri, registered_at = now()
            """,
            (video_id, source_uri),
        )


def lookup_source(database: Database, video_id: str) -> str | None:
    """The registered source of ``video_id``, or None."""
    with database.connection() as connection:
        connection.execute(_DDL)
        row = connection.execute(
            "SELECT source_uri FROM videoqa_video_sources WHERE video_id = %s", (video_id,)
        ).fetchone()
    return None if row is None else str(row[0])

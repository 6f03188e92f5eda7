"""The errors a stage may raise, each with a ``permanent`` flag.

Stages raise the libraries' own errors (media, AI providers, source fetching, S3) untouched; the
one error of their own is :class:`StageInputError`, for an upstream table that cannot be what the
stage needs. The Dagster layer maps every error in :data:`STAGE_ERRORS` onto a failure in one
place: permanent ones fail the step at once, the others are left to its retry policy.
"""

from __future__ import annotations

import pandas as pd

from videoqa_pipeline.ai import AIProviderError
from videoqa_pipeline.fetch import SourceUnavailableError
from videoqa_pipeline.media import MediaError
from videoqa_pipeline.storage.s3_blobs import S3StorageError


class StageInputError(ValueError):
    """An upstream table does not hold what this stage needs; materializing it again fixes it.

    Always permanent: retrying the stage reads the same table again.
    """

    permanent = True


#: Every error a stage raises on purpose; each has a ``permanent`` attribute.
STAGE_ERRORS: tuple[type[Exception], ...] = (
    MediaError,
    AIProviderError,
    SourceUnavailableError,
    S3StorageError,
    StageInputError,
)


def single_row(frame: pd.DataFrame, table: str, video_id: str) -> pd.Series:
    """The one row of a per-video table that holds exactly one row per video.

    Raises:
        StageInputError: the table has no row (or several) for the video.
    """
    if len(frame) != 1:
        raise StageInputError(
            f"{table} has {len(frame)} rows for video {video_id!r}; materialize it again first"
        )
    return frame.iloc[0]

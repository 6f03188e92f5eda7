"""Exceptions raised by the media layer.

Every error names the file and says what is wrong with it, so a message shown in the
Dagster UI, the job ledger or the CLI is enough for a user to act on. The ``permanent``
flag tells the orchestration layer whether retrying the same input could ever help:
bad input is permanent, an ffmpeg process killed by a signal (out of memory, timeout)
is not.
"""

from __future__ import annotations

import os


class MediaError(Exception):
    """Base class of every error raised by :mod:`videoqa_pipeline.media`.

    Attributes:
        path: The file the error is about (as given by the caller).
        reason: What is wrong, in words a user understands.
        permanent: True when the input itself is bad and a retry will fail again.
    """

    permanent: bool = True

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, *, permanent: bool | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.reason = reason
        if permanent is not None:
            self.permanent = permanent
        message = f"{self.path}: {reason}" if self.path is not None else reason
        super().__init__(message)


class MediaNotFoundError(MediaError):
    """The path does not exist (or is not a regular file)."""


class EmptyMediaError(MediaError):
    """The file exists but has zero bytes."""


class NotMediaError(MediaError):
    """The file is not a video: random bytes, text, or a still image where video was expected."""


class NoVideoStreamError(MediaError):
    """The file is valid media but carries no video stream (for example audio only)."""


class TruncatedMediaError(MediaError):
    """The file was cut short: missing MP4 ``moov`` atom, or the index points past the end of the data."""


class FFmpegError(MediaError):
    """An ffmpeg process failed.

    Attributes:
        returncode: The exit status; negative when the process was killed by a signal.
        stderr_tail: The last lines ffmpeg wrote to stderr.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        reason: str,
        *,
        returncode: int | None = None,
        stderr_tail: str = "",
        permanent: bool | None = None,
    ):
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        if permanent is None:
            # A kill by signal (OOM killer, timeout) says nothing about the input: retry may work.
            permanent = not (returncode is not None and returncode < 0)
        detail = f"{reason}"
        if returncode is not None:
            detail += f" (exit status {returncode})"
        if stderr_tail:
            detail += f"; ffmpeg said: {stderr_tail}"
        super().__init__(path, detail, permanent=permanent)

"""Locating and running the ffmpeg binary.

The media layer must work after ``pip install`` alone, so the binary is chosen in this
order: the ``VIDEOQA_FFMPEG`` environment variable (an explicit choice always wins), a
system ``ffmpeg`` on ``PATH`` (usually built with more codecs and hardware support), and
finally the static binary shipped inside the ``imageio-ffmpeg`` wheel.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence

from videoqa_pipeline.media.errors import FFmpegError

logger = logging.getLogger(__name__)

FFMPEG_ENV_VAR = "VIDEOQA_FFMPEG"
STDERR_TAIL_LINES = 8


@functools.lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    """Return the path of the ffmpeg binary to use.

    The result is cached for the life of the process; call ``ffmpeg_executable.cache_clear()``
    after changing ``VIDEOQA_FFMPEG``.

    Returns:
        An absolute path (or a command name found on ``PATH``) of an ffmpeg executable.

    Raises:
        FFmpegError: ``VIDEOQA_FFMPEG`` is set but does not name an executable, or no ffmpeg
            can be found at all (neither on ``PATH`` nor in the imageio-ffmpeg wheel).
    """
    override = os.environ.get(FFMPEG_ENV_VAR, "").strip()
    if override:
        resolved = shutil.which(override)
        if resolved is None:
            raise FFmpegError(
                None,
                f"{FFMPEG_ENV_VAR}={override!r} is not an executable file; "
                "point it at an ffmpeg binary or unset it to use the default",
            )
        logger.info("Using ffmpeg from %s: %s", FFMPEG_ENV_VAR, resolved)
        return resolved
    system = shutil.which("ffmpeg")
    if system is not None:
        logger.info("Using system ffmpeg: %s", system)
        return system
    try:
        import imageio_ffmpeg

        bundled = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise FFmpegError(
            None,
            "no ffmpeg found: install the imageio-ffmpeg package, put ffmpeg on PATH, "
            f"or set {FFMPEG_ENV_VAR} ({exc})",
        ) from exc
    logger.info("Using ffmpeg bundled with imageio-ffmpeg: %s", bundled)
    return str(bundled)


def run_ffmpeg(
    args: Sequence[str],
    *,
    path: str | os.PathLike[str] | None,
    step: str,
    timeout: float | None = None,
) -> None:
    """Run one ffmpeg command, keeping only the tail of its stderr in memory.

    Args:
        args: The full command line, starting with the executable.
        path: The input file, named in the error message if the command fails.
        step: What the command was doing ("normalize", "extract audio"), for the message.
        timeout: Seconds after which the process is killed (the error is then retryable).

    Raises:
        FFmpegError: ffmpeg exited with a non-zero status, was killed, or timed out.
    """
    logger.debug("Running %s", " ".join(args))
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    try:
        process = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise FFmpegError(path, f"{step}: could not start {args[0]!r}: {exc}", permanent=False) from exc
    assert process.stderr is not None
    try:
        # Reading line by line keeps memory bounded even when ffmpeg floods stderr.
        for line in process.stderr:
            line = line.strip()
            if line:
                tail.append(line)
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        process.kill()
        process.wait()
        raise FFmpegError(
            path, f"{step}: ffmpeg timed out after {timeout} s", returncode=-9, stderr_tail=" | ".join(tail)
        ) from exc
    finally:
        process.stderr.close()
    if returncode != 0:
        raise FFmpegError(path, f"{step} failed", returncode=returncode, stderr_tail=" | ".join(tail))

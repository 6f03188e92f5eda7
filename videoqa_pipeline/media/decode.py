"""Fast, low-memory frame access with PyAV, shared by scene detection and keyframe extraction.

Two tricks keep decoding cheap without touching the result:

* Small frames come from strided views of the decoded YUV planes (no full-size RGB
  conversion), which costs almost nothing next to the decode itself.
* Scene detection may skip non-reference frames (``skip_frame="NONREF"``): the decoder never
  reconstructs them, roughly halving decode time on B-frame streams while the remaining
  frames are still at most a few frames apart.

Only one decoded frame is alive at a time, so memory is flat whatever the video length.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av
import av.error
import cv2
import numpy as np

from videoqa_pipeline.media.errors import MediaError, NoVideoStreamError, TruncatedMediaError

logger = logging.getLogger(__name__)

_FAST_FORMATS = {"yuv420p", "yuvj420p"}


@dataclass(frozen=True)
class SmallFrame:
    """A decoded frame reduced for analysis.

    Attributes:
        time: Presentation time in seconds from the start of the stream.
        image: BGR ``uint8`` array of shape (height, width, 3).
    """

    time: float
    image: np.ndarray


@contextmanager
def open_video(
    path: str | os.PathLike[str],
) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open a file and its first video stream with threaded decoding.

    Raises:
        NoVideoStreamError: The file has no video stream.
        MediaError: The file cannot be opened.
    """
    try:
        container = av.open(os.fspath(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise MediaError(
            path, f"cannot be opened for decoding ({exc.strerror}); run `videoqa probe` on it"
        ) from exc
    try:
        if not container.streams.video:
            raise NoVideoStreamError(path, "has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield container, stream
    finally:
        container.close()


def stream_start_seconds(stream: av.video.stream.VideoStream) -> float:
    """Time of the stream's first timestamp, so callers can report times from zero."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def downscale_factor_for(width: int, target_width: int) -> int:
    """The integer factor that brings ``width`` closest to (not below half of) ``target_width``."""
    return max(1, round(width / target_width))


def small_bgr(frame: av.VideoFrame, factor: int) -> np.ndarray:
    """Reduce a decoded frame by an integer factor and convert it to BGR.

    For 8-bit 4:2:0 frames this samples the planes with strides (no copy of the full
    frame); other formats go through swscale.
    """
    if frame.format.name in _FAST_FORMATS and factor >= 2 and frame.width >= 2 * factor:
        y = plane_array(frame, 0, frame.width, frame.height)[::factor, ::factor]
        chroma = max(1, factor // 2)
        u = plane_array(frame, 1, frame.width // 2, frame.height // 2)[::chroma, ::chroma]
        v = plane_array(frame, 2, frame.width // 2, frame.height // 2)[::chroma, ::chroma]
        rows = min(y.shape[0], u.shape[0], v.shape[0])
        cols = min(y.shape[1], u.shape[1], v.shape[1])
        yuv = np.dstack((y[:rows, :cols], u[:rows, :cols], v[:rows, :cols]))
        return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR)
    width = max(2, frame.width // factor)
    height = max(2, frame.height // factor)
    image: np.ndarray = frame.reformat(
        width=width, height=height, format="bgr24", interpolation="FAST_BILINEAR"
    ).to_ndarray()
    return image


def plane_array(frame: av.VideoFrame, index: int, width: int, height: int) -> np.ndarray:
    """A zero-copy view of one 8-bit plane, without the row padding."""
    plane = frame.planes[index]
    buffer = np.frombuffer(memoryview(plane), dtype=np.uint8)
    return buffer.reshape(plane.height, plane.line_size)[:height, :width]


def iter_small_frames(
    path: str | os.PathLike[str],
    factor: int,
    *,
    skip_nonref: bool = True,
) -> Iterator[SmallFrame]:
    """Decode the whole video once, yielding reduced BGR frames in presentation order.

    Args:
        path: The video.
        factor: Integer downscale factor (1 keeps full size).
        skip_nonref: Let the decoder drop non-reference frames (about half on B-frame streams).

    Raises:
        MediaError: The file cannot be opened or has no video stream.
        TruncatedMediaError: Decoding failed before any frame was produced.
    """
    with open_video(path) as (container, stream):
        if skip_nonref:
            stream.codec_context.skip_frame = "NONREF"
        start = stream_start_seconds(stream)
        produced = 0
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                produced += 1
                yield SmallFrame(time=max(0.0, frame.time - start), image=small_bgr(frame, factor))
        except av.error.FFmpegError as exc:
            if produced == 0:
                raise TruncatedMediaError(path, f"no frame could be decoded ({exc.strerror})") from exc
            # A damaged tail: keep what was decoded, like players do.
            logger.warning("%s: decoding stopped after %d frames: %s", path, produced, exc)
        if produced == 0 and skip_nonref:
            # Streams whose frames are all marked non-reference (rare): decode them all.
            yield from iter_small_frames(path, factor, skip_nonref=False)

"""Fast, low-memory frame access with PyAV, shared by scene detection and keyframe extraction.

Two tricks keep decoding cheap:

* Small frames come from strided views of the decoded YUV planes (no full-size RGB
  conversion), which costs almost nothing next to the decode itself.
* Scene detection lets the decoder skip frames. On H.264 it skips every B-frame
  (``skip_frame="BIDIR"``) and so decodes about a quarter of the frames, still a few frames
  apart. Where an encoder also predicts P-frames from B-frames (x264 with B-pyramid at its
  slower presets does), those P-frames carry a small prediction error until the next
  keyframe: invisible to cut detection, which compares frames at thresholds far above it
  (cut lists are identical to exact decoding on every generated test and benchmark video).
  A frame flagged corrupt, or decoded frames more than a quarter second apart, make the rest
  of the stream skip less: ``skip_frame="NONREF"`` (always exact; other codecs start there),
  then no skipping at all.
  Keyframe extraction (:mod:`videoqa_pipeline.media.frames`) needs exact pixels and only
  ever skips non-reference frames.

Only one decoded frame is alive at a time, so memory is flat whatever the video length.

A packet the decoder refuses (a damaged file) is skipped and decoding goes on with the next one,
as players do: the decoder picks up again at the next keyframe, and callers see a hole in the
frame times (:mod:`videoqa_pipeline.media.coverage` measures it) instead of losing the rest of
the video.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

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


def video_stream_seconds(path: str | os.PathLike[str], fallback: float) -> float:
    """Length of the first video stream by its own header, else ``fallback`` (the container's).

    The container's duration is that of its longest stream: audio running past the end of the
    picture must not count as undecodable video.
    """
    with open_video(path) as (_, stream):
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
    return fallback


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
    skip_frames: bool = True,
) -> Iterator[SmallFrame]:
    """Decode the whole video once, yielding reduced BGR frames in presentation order.

    Args:
        path: The video.
        factor: Integer downscale factor (1 keeps full size).
        skip_frames: Let the decoder drop frames that cut detection can do without (see the
            module docstring); the frames yielded are then a subset, normally a few apart.

    Raises:
        MediaError: The file cannot be opened or has no video stream.
        TruncatedMediaError: Decoding failed before any frame was produced.
    """
    with open_video(path) as (container, stream):
        context = stream.codec_context
        skip: SkipMode = initial_skip_mode(stream) if skip_frames else "DEFAULT"
        context.skip_frame = skip
        start = stream_start_seconds(stream)
        produced = 0
        previous_time: float | None = None
        for frame in decoded_frames(container, stream, path):
            if frame.time is None:
                continue
            if skip != "DEFAULT" and _skipping_too_much(frame, previous_time):
                # Skip less from here on; a frame damaged by skipping is never analysed.
                skip = context.skip_frame = _SKIP_LADDER[_SKIP_LADDER.index(skip) + 1]
                logger.info("%s: too many frames skipped at %.2f s; skip_frame=%s", path, frame.time, skip)
            if frame.is_corrupt:
                continue
            previous_time = frame.time
            produced += 1
            yield SmallFrame(time=max(0.0, frame.time - start), image=small_bgr(frame, factor))
        if produced == 0 and skip_frames:
            # Streams whose frames are all marked skippable (rare): decode them all.
            yield from iter_small_frames(path, factor, skip_frames=False)


def decoded_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: str | os.PathLike[str],
    *,
    before_decode: Callable[[av.Packet], None] | None = None,
) -> Iterator[av.VideoFrame]:
    """Every frame the decoder gives for ``stream``, going on past packets it refuses (module docstring).

    Damage in the container itself (an index pointing past the end) ends the stream there.
    ``before_decode`` sees each packet first (to change ``skip_frame``, say).

    Raises:
        TruncatedMediaError: Not a single frame decoded and the decoder refused packets.
    """
    refused = 0
    produced = 0
    first_error: av.error.FFmpegError | None = None
    try:
        for packet in container.demux(stream):
            if before_decode is not None:
                before_decode(packet)
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                refused += 1
                first_error = first_error or exc
                continue
            produced += len(frames)
            yield from frames
    except av.error.FFmpegError as exc:
        first_error = first_error or exc
        logger.info("%s: reading stopped after %d frame(s): %s", path, produced, exc)
    if produced == 0 and first_error is not None:
        raise TruncatedMediaError(
            path, f"no frame could be decoded ({first_error.strerror})"
        ) from first_error
    if refused:
        logger.info("%s: %d undecodable video packet(s) skipped", path, refused)


# Decoded frames further apart than this mean the decoder skips too much for cut detection.
MAX_ANALYSIS_GAP_SECONDS = 0.25
SkipMode = Literal["BIDIR", "NONREF", "DEFAULT"]
# From most to least skipping: all B-frames, non-reference frames, nothing.
_SKIP_LADDER: tuple[SkipMode, ...] = ("BIDIR", "NONREF", "DEFAULT")


def initial_skip_mode(stream: av.video.stream.VideoStream) -> SkipMode:
    """The ``skip_frame`` mode to start with for frames nobody will look at (module docstring)."""
    return "BIDIR" if stream.codec_context.name == "h264" else "NONREF"


def _skipping_too_much(frame: av.VideoFrame, previous_time: float | None) -> bool:
    if frame.is_corrupt:
        return True
    if previous_time is None or frame.time is None:
        return False
    return frame.time - previous_time > MAX_ANALYSIS_GAP_SECONDS

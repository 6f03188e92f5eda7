"""Keyframe extraction: one JPEG per requested time, optionally the sharpest frame nearby.

Frames are reached with accurate seeks (seek to the preceding keyframe, decode forward),
and while decoding towards a target the decoder skips non-reference frames, which nothing
later depends on. When targets are close together decoding simply continues instead of
seeking. With ``seek_threshold_seconds=math.inf`` the same code becomes a single sequential
pass; ``benchmarks/bench_media.py`` measures both.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
import cv2
import numpy as np

from videoqa_pipeline.media.decode import decoded_frames, open_video, plane_array, stream_start_seconds
from videoqa_pipeline.media.errors import MediaError, TruncatedMediaError
from videoqa_pipeline.media.scenes import Scene

logger = logging.getLogger(__name__)

# Candidates for the sharpest frame are taken within this many seconds of the target.
SHARPNESS_WINDOW_SECONDS = 0.2
# Seek only when the next target is further ahead than this; nearer ones are cheaper to reach
# by decoding on (a typical keyframe interval is 2-10 s).
DEFAULT_SEEK_THRESHOLD_SECONDS = 2.0
# Sharpness is measured on the luma plane reduced to about this width.
_SHARPNESS_WIDTH = 320


@dataclass(frozen=True)
class Keyframe:
    """One extracted frame.

    Attributes:
        timestamp: Exact presentation time of the frame, in seconds from the start.
        jpeg: JPEG bytes, rotation applied.
        width: JPEG width.
        height: JPEG height.
        sharpness: Variance of the Laplacian of the frame's luma (higher is sharper), when
            sharpness was measured.
    """

    timestamp: float
    jpeg: bytes
    width: int
    height: int
    sharpness: float | None


def keyframe_timestamps(scenes: Sequence[Scene], indices: Sequence[int]) -> list[float]:
    """Return a representative time (the middle) for each selected scene.

    Args:
        scenes: All scenes of the video.
        indices: Positions in ``scenes`` to take (e.g. from :func:`select_scene_indices`).

    Returns:
        One time in seconds per index, in the order of ``indices``.

    Raises:
        IndexError: An index is out of range.
    """
    return [scenes[i].middle_seconds for i in indices]


def extract_keyframes(
    path: str | os.PathLike[str],
    timestamps: Sequence[float],
    max_width: int = 640,
    *,
    pick_sharpest: bool = True,
    jpeg_quality: int = 85,
    window_seconds: float = SHARPNESS_WINDOW_SECONDS,
    seek_threshold_seconds: float = DEFAULT_SEEK_THRESHOLD_SECONDS,
) -> list[Keyframe]:
    """Decode one frame per timestamp and encode it as JPEG.

    Args:
        path: The video.
        timestamps: Times in seconds from the start of the video, in any order; times past
            the end give the last frame, negative times the first.
        max_width: Largest JPEG width (never upscaled; aspect kept, rotation applied).
        pick_sharpest: Take the sharpest frame within ``window_seconds`` of each time instead
            of the frame nearest to it (avoids motion-blurred or transition frames).
        jpeg_quality: JPEG quality, 1-100.
        window_seconds: Half-width of the candidate window when ``pick_sharpest``.
        seek_threshold_seconds: Seek when the next target is further ahead than this;
            ``math.inf`` decodes the file in one sequential pass.

    Returns:
        One :class:`Keyframe` per timestamp, in the order of ``timestamps``.

    Raises:
        ValueError: ``max_width`` < 2 or ``jpeg_quality`` outside 1-100.
        MediaError: The file cannot be opened or has no video stream.
        TruncatedMediaError: No frame can be decoded.
    """
    if max_width < 2:
        raise ValueError(f"max_width must be at least 2, got {max_width}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be within 1-100, got {jpeg_quality}")
    if not timestamps:
        return []
    half_window = window_seconds if pick_sharpest else 0.0
    order = sorted(range(len(timestamps)), key=lambda i: timestamps[i])
    results: list[Keyframe | None] = [None] * len(timestamps)

    with open_video(path) as (container, stream):
        reader = _FrameReader(path, container, stream)
        for position in order:
            target = max(0.0, float(timestamps[position]))
            frame, sharpness = reader.pick(
                target - half_window,
                target + half_window,
                target,
                measure_sharpness=pick_sharpest,
                seek_threshold=seek_threshold_seconds,
            )
            results[position] = _to_keyframe(
                frame, reader.relative_time(frame), sharpness, max_width, jpeg_quality
            )
    logger.info("%s: extracted %d keyframe(s) with %d seek(s)", path, len(timestamps), reader.seeks)
    return [keyframe for keyframe in results if keyframe is not None]


class _FrameReader:
    """Decodes forward through one stream, seeking only when it pays off."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
    ) -> None:
        self.path = path
        self.container = container
        self.stream = stream
        self.start = stream_start_seconds(stream)
        self.time_base = stream.time_base
        self.seeks = 0
        self._frames: Iterator[av.VideoFrame] | None = None
        self._pending: av.VideoFrame | None = None  # decoded but not consumed yet
        self._last: av.VideoFrame | None = None  # last frame consumed
        self._skip_before: float = -math.inf  # absolute time below which non-ref frames may be skipped

    def relative_time(self, frame: av.VideoFrame) -> float:
        return max(0.0, float(frame.time or 0.0) - self.start)

    def pick(
        self,
        window_start: float,
        window_end: float,
        target: float,
        *,
        measure_sharpness: bool,
        seek_threshold: float,
    ) -> tuple[av.VideoFrame, float | None]:
        """Return the best frame for a target window (times relative to the stream start)."""
        position = self._position()
        need_seek = (
            self._frames is None
            or position is None
            or (
                window_start < position - 1e-6
                and (self._last is None or window_start < self.relative_time(self._last))
            )
            or window_start - position > seek_threshold
        )
        if need_seek:
            self._seek(window_start)
        self._skip_before = self.start + window_start

        candidates: list[av.VideoFrame] = []
        previous = self._last
        while (frame := self._next_frame()) is not None:
            time = self.relative_time(frame)
            if time < window_start - 1e-6:
                previous = frame
                self._last = frame
                continue
            if time <= window_end + 1e-6:
                candidates.append(frame)
                self._last = frame
                continue
            # Past the window: keep this frame for the next target.
            self._pending = frame
            if not candidates:
                candidates = [_closest(previous, frame, target)]
            break
        else:
            if not candidates and previous is not None:
                candidates = [previous]  # target past the end: the last frame
        if not candidates:
            raise TruncatedMediaError(self.path, f"no frame could be decoded near {target:.3f} s")
        if not measure_sharpness:
            return _closest_of(candidates, target, self), None
        scored = [
            (_sharpness(frame), -abs(self.relative_time(frame) - target), frame) for frame in candidates
        ]
        best = max(scored, key=lambda item: (item[0], item[1]))
        return best[2], best[0]

    def _position(self) -> float | None:
        if self._pending is not None:
            return self.relative_time(self._pending)
        if self._last is not None:
            return self.relative_time(self._last)
        return None

    def _seek(self, window_start: float) -> None:
        # Seek a little before the window so the frame just before it is available too.
        seek_time = max(0.0, window_start - 0.1) + self.start
        offset = int(seek_time / self.time_base) if self.time_base else 0
        try:
            self.container.seek(offset, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError as exc:
            logger.debug("%s: seek to %.3f s failed (%s); decoding from the start", self.path, seek_time, exc)
            self.container.seek(0)
        self.seeks += 1
        self._frames = self._decode()
        self._pending = None
        self._last = None

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Frames from the current position on. Packets the decoder refuses are skipped
        (:func:`~videoqa_pipeline.media.decode.decoded_frames`): a target in a damaged stretch gets
        the nearest frame that decoded, with that frame's own time."""
        for frame in decoded_frames(self.container, self.stream, self.path, before_decode=self._skip_early):
            if frame.time is not None:
                yield frame

    def _skip_early(self, packet: av.Packet) -> None:
        """Non-reference frames before the window are never shown and never needed by other
        frames: let the decoder drop them."""
        context = self.stream.codec_context
        time_base = self.time_base or Fraction(1, 1)
        early = packet.pts is not None and float(packet.pts * time_base) < self._skip_before - 0.25
        if early and context.skip_frame != "NONREF":
            context.skip_frame = "NONREF"
        elif not early and context.skip_frame != "DEFAULT":
            context.skip_frame = "DEFAULT"

    def _next_frame(self) -> av.VideoFrame | None:
        # A plain next() (not a nested generator) so that stopping at a window never closes
        # the underlying decode generator.
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        assert self._frames is not None
        return next(self._frames, None)


def _closest(first: av.VideoFrame | None, second: av.VideoFrame, target: float) -> av.VideoFrame:
    if first is None:
        return second
    start = 0.0  # both frames come from the same stream, so the offset cancels out
    return first if abs((first.time or start) - target) <= abs((second.time or start) - target) else second


def _closest_of(frames: list[av.VideoFrame], target: float, reader: _FrameReader) -> av.VideoFrame:
    return min(frames, key=lambda frame: abs(reader.relative_time(frame) - target))


def _sharpness(frame: av.VideoFrame) -> float:
    """Variance of the Laplacian of the reduced luma: a standard, cheap focus measure."""
    factor = max(1, round(frame.width / _SHARPNESS_WIDTH))
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuv444p", "nv12", "yuvj422p", "yuvj444p"):
        luma = plane_array(frame, 0, frame.width, frame.height)[::factor, ::factor]
    else:
        luma = frame.reformat(
            width=max(2, frame.width // factor), height=max(2, frame.height // factor), format="gray"
        ).to_ndarray()
    return float(cv2.Laplacian(np.ascontiguousarray(luma), cv2.CV_64F).var())


def _to_keyframe(
    frame: av.VideoFrame, timestamp: float, sharpness: float | None, max_width: int, quality: int
) -> Keyframe:
    rotation = round(frame.rotation or 0) % 360
    display_width, display_height = (
        (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
    )
    out_width = min(max_width, display_width)
    out_height = max(2, round(display_height * out_width / display_width))
    coded_size = (out_height, out_width) if rotation in (90, 270) else (out_width, out_height)
    image: np.ndarray = frame.reformat(
        width=coded_size[0], height=coded_size[1], format="bgr24", interpolation="AREA"
    ).to_ndarray()
    if rotation:
        # PyAV reports the display matrix angle counter-clockwise, like np.rot90 turns; the
        # result matches ffmpeg's autorotation (checked by the tests).
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError(None, f"JPEG encoding failed for the frame at {timestamp:.3f} s")
    return Keyframe(
        timestamp=round(timestamp, 6),
        jpeg=encoded.tobytes(),
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        sharpness=sharpness,
    )

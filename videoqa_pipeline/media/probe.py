"""Facts about a media file: container, duration, streams, rotation, frame rate.

Probing uses PyAV (libav* in-process), which is much faster than spawning ``ffprobe`` and
does not need an ffprobe binary at all (the imageio-ffmpeg wheel ships only ffmpeg). Only
the container header, the packet index and one decoded frame are read, never the whole file.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from videoqa_pipeline.media.errors import (
    EmptyMediaError,
    MediaError,
    MediaNotFoundError,
    NotMediaError,
    NoVideoStreamError,
    TruncatedMediaError,
)

logger = logging.getLogger(__name__)

# Demuxers that read still images: a PNG or JPEG opens "successfully" as a one-frame video,
# but it is not what a video pipeline expects.
_IMAGE_FORMAT_SUFFIXES = ("_pipe",)
_IMAGE_FORMATS = {"image2", "gif", "apng", "webp", "tiff"}
_MP4_FAMILY = "mov,mp4,m4a,3gp,3g2,mj2"
# How many packets to look at when the container has no per-frame index (e.g. Matroska).
_VFR_SAMPLE_PACKETS = 240
# Relative spread of frame durations above which a stream is called variable frame rate.
_VFR_TOLERANCE = 0.15


@dataclass(frozen=True)
class VideoStreamInfo:
    """The first video stream of a file.

    ``width`` and ``height`` are as displayed: a phone video stored 1920x1080 with a 90°
    display matrix is reported 1080x1920 with ``rotation=90``.
    """

    codec: str
    width: int
    height: int
    fps: float
    frame_count: int | None
    vfr: bool
    rotation: int
    pix_fmt: str | None
    bit_depth: int | None


@dataclass(frozen=True)
class AudioStreamInfo:
    """The first audio stream of a file."""

    codec: str
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learned about a file."""

    path: str
    duration: float
    container: str
    size: int
    video: VideoStreamInfo | None
    audio: AudioStreamInfo | None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape printed by ``videoqa probe --json``.

        Returns:
            ``{duration, container, size, video: {codec, width, height, fps, vfr, rotation}
            or None, audio: {codec, sample_rate, channels} or None}`` plus ``path`` and the
            extra video fields (``frame_count``, ``pix_fmt``, ``bit_depth``).
        """
        video = None
        if self.video is not None:
            video = asdict(self.video)
            video["fps"] = round(self.video.fps, 3)
        return {
            "path": self.path,
            "duration": round(self.duration, 3),
            "container": self.container,
            "size": self.size,
            "video": video,
            "audio": asdict(self.audio) if self.audio is not None else None,
        }


def probe(path: str | os.PathLike[str], *, require_video: bool = True) -> MediaInfo:
    """Read the facts of a media file without decoding it.

    Args:
        path: A local path (``file://`` URIs are accepted too).
        require_video: Raise :class:`NoVideoStreamError` when the file has no video stream.
            Pass False to probe audio files.

    Returns:
        The container, duration, size and first video/audio stream of the file.

    Raises:
        MediaNotFoundError: The path does not exist or is not a file.
        EmptyMediaError: The file has zero bytes.
        NotMediaError: The bytes are not a media container, or are a still image.
        NoVideoStreamError: ``require_video`` is True and there is no video stream.
        TruncatedMediaError: The file was cut short (MP4 without ``moov``, index past the end).
    """
    file_path = _local_path(path)
    if not file_path.exists():
        raise MediaNotFoundError(file_path, "file not found; check the path and that the upload finished")
    if not file_path.is_file():
        raise MediaNotFoundError(file_path, "is not a regular file (a directory?); give the path of a video")
    size = file_path.stat().st_size
    if size == 0:
        raise EmptyMediaError(file_path, "file is empty (0 bytes); the upload or copy probably failed")

    try:
        container = av.open(str(file_path), metadata_errors="ignore")
    except av.error.InvalidDataError as exc:
        raise _classify_open_failure(file_path) from exc
    except av.error.FFmpegError as exc:
        raise NotMediaError(file_path, f"cannot be opened as media ({exc.strerror})") from exc

    with container:
        format_name = container.format.name
        if format_name in _IMAGE_FORMATS or format_name.endswith(_IMAGE_FORMAT_SUFFIXES):
            raise NotMediaError(
                file_path, f"is a still image ({format_name.replace('_pipe', '').upper()}), not a video"
            )
        if not container.streams.video and not container.streams.audio:
            raise NotMediaError(file_path, f"contains no audio or video streams (container {format_name})")
        if format_name == _MP4_FAMILY:
            _check_index_within_file(file_path, container, size)

        duration = _duration_seconds(container)
        audio = _audio_info(container)
        video = _video_info(file_path, container, duration) if container.streams.video else None
        if video is None and require_video:
            what = "audio only" if audio is not None else "no video stream"
            raise NoVideoStreamError(file_path, f"has no video stream ({what}); a video file was expected")

    info = MediaInfo(
        path=str(file_path),
        duration=duration,
        container=format_name,
        size=size,
        video=video,
        audio=audio,
    )
    logger.debug("Probed %s: %s", file_path, info)
    return info


def _local_path(path: str | os.PathLike[str]) -> Path:
    text = os.fspath(path)
    if text.startswith("file://"):
        from urllib.parse import unquote, urlparse

        text = unquote(urlparse(text).path)
    elif "://" in text:
        raise MediaError(text, "only local files and file:// URIs can be probed; download the file first")
    return Path(text)


def _classify_open_failure(file_path: Path) -> MediaError:
    """Turn libavformat's generic "invalid data" into the most useful error."""
    with file_path.open("rb") as handle:
        head = handle.read(64)
    if head[4:8] == b"ftyp" or b"mdat" in head[:64] or head[4:8] in (b"moov", b"wide", b"free"):
        return TruncatedMediaError(
            file_path,
            "looks like an MP4/MOV but its index (moov atom) is missing: the file was cut short "
            "(interrupted upload or recording); re-upload the complete file",
        )
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return TruncatedMediaError(file_path, "Matroska/WebM header is damaged or the file was cut short")
    if _looks_like_text(head):
        return NotMediaError(file_path, "is a text file, not a video")
    return NotMediaError(file_path, "is not a media file (unrecognised bytes)")


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _check_index_within_file(file_path: Path, container: av.container.InputContainer, size: int) -> None:
    """An MP4 whose moov came first but whose data was cut short still opens: catch it here."""
    for stream in container.streams:
        entries = getattr(stream, "index_entries", None)
        if entries is None or len(entries) == 0:
            continue
        last = entries[len(entries) - 1]
        if last.pos >= 0 and last.pos + last.size > size:
            needed = last.pos + last.size
            raise TruncatedMediaError(
                file_path,
                f"is truncated: its index needs {needed} bytes but the file has only {size}; "
                "re-upload the complete file",
            )


def _duration_seconds(container: av.container.InputContainer) -> float:
    if container.duration is not None and container.duration > 0:
        return float(container.duration) / av.time_base
    best = 0.0
    for stream in container.streams:
        if stream.duration is not None and stream.time_base is not None:
            best = max(best, float(stream.duration * stream.time_base))
    return best


def _audio_info(container: av.container.InputContainer) -> AudioStreamInfo | None:
    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    ctx = stream.codec_context
    return AudioStreamInfo(
        codec=ctx.name,
        sample_rate=int(ctx.sample_rate or 0),
        channels=int(ctx.channels or 0),
    )


def _video_info(file_path: Path, container: av.container.InputContainer, duration: float) -> VideoStreamInfo:
    stream = container.streams.video[0]
    ctx = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    vfr = _is_vfr(container, stream)
    frame_count: int | None = int(stream.frames) if stream.frames else None
    if frame_count is None and fps > 0 and duration > 0:
        frame_count = round(duration * fps)

    rotation, width, height = _first_frame_geometry(file_path, container, stream)
    pix_fmt = ctx.pix_fmt
    return VideoStreamInfo(
        codec=ctx.name,
        width=width,
        height=height,
        fps=fps,
        frame_count=frame_count,
        vfr=vfr,
        rotation=rotation,
        pix_fmt=pix_fmt,
        bit_depth=_bit_depth(pix_fmt),
    )


def _first_frame_geometry(
    file_path: Path, container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> tuple[int, int, int]:
    """Decode one frame: it proves the stream is decodable and carries the display matrix."""
    ctx = stream.codec_context
    width, height, rotation = int(ctx.width), int(ctx.height), 0
    try:
        container.seek(0)
        for frame in container.decode(stream):
            width, height = frame.width, frame.height
            rotation = round(frame.rotation) % 360
            break
        else:
            raise TruncatedMediaError(file_path, "the video stream has no decodable frames")
    except av.error.FFmpegError as exc:
        raise TruncatedMediaError(
            file_path, f"the video stream cannot be decoded ({exc.strerror}); the file is damaged"
        ) from exc
    if rotation in (90, 270):
        width, height = height, width
    return rotation, width, height


def _is_vfr(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> bool:
    """Look at frame timestamps (from the index when there is one) for uneven spacing."""
    timestamps: list[int] = []
    entries = stream.index_entries
    if entries is not None and stream.frames and len(entries) >= min(stream.frames, 3):
        count = min(len(entries), 5000)
        timestamps = [entries[i].timestamp for i in range(count)]
    else:
        try:
            for packet in container.demux(stream):
                if packet.pts is not None:
                    timestamps.append(packet.pts)
                if len(timestamps) >= _VFR_SAMPLE_PACKETS:
                    break
        except av.error.FFmpegError:
            pass
    timestamps = sorted(set(timestamps))
    if len(timestamps) < 3:
        return False
    deltas = [b - a for a, b in itertools.pairwise(timestamps)]
    deltas.sort()
    # Ignore the extremes: a single odd first/last frame duration is not VFR.
    trim = max(1, len(deltas) // 50)
    core = deltas[trim:-trim] if len(deltas) > 2 * trim + 1 else deltas
    low, high = core[0], core[-1]
    if low <= 0:
        return True
    return Fraction(high - low, low) > _VFR_TOLERANCE


def _bit_depth(pix_fmt: str | None) -> int | None:
    if not pix_fmt:
        return None
    try:
        return int(av.VideoFormat(pix_fmt).components[0].bits)
    except (ValueError, IndexError, AttributeError):
        return None

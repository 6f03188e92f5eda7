"""Normalize a source video into the one format every later stage reads.

One ffmpeg process writes both outputs (H.264 MP4 and 16 kHz mono WAV), so the source is
demuxed and decoded exactly once. ffmpeg streams the file; nothing is held in Python memory.
A source that already is what we would produce (8-bit yuv420p H.264 in MP4/MOV, even
dimensions within the height limit, no rotation) is remuxed instead of re-encoded: phone
and screen recordings often are, and copying costs a fraction of a decode.

The WAV stays on the source's timeline: ffmpeg's ``aresample=async=1:first_pts=0`` places samples
by their timestamps, so audio packets a damaged file cannot decode become silence of the same
length instead of pulling every later word earlier, and ``apad`` pads the end to the source's
duration. How much of the audio decoded is measured first (:func:`~videoqa_pipeline.media.coverage.audio_coverage`):
a source whose audio does not decode at all is normalized without it, video only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from videoqa_pipeline.media.coverage import Coverage, audio_coverage
from videoqa_pipeline.media.errors import MediaError
from videoqa_pipeline.media.probe import MediaInfo, probe
from videoqa_pipeline.media.tools import ffmpeg_executable, run_ffmpeg
from videoqa_pipeline.options import DEFAULT_PRESET

logger = logging.getLogger(__name__)

VIDEO_FILENAME = "video.mp4"
AUDIO_FILENAME = "audio.wav"
AUDIO_SAMPLE_RATE = 16_000
DEFAULT_CRF = 23


_COPYABLE_CONTAINERS = {"mov", "mp4"}


@dataclass(frozen=True)
class NormalizedMedia:
    """The normalized outputs of one video.

    Attributes:
        video_path: H.264/yuv420p MP4 with the moov atom first, rotation applied.
        audio_path: 16 kHz mono PCM WAV, or None when the source has no audio.
        width: Width of the normalized video (even).
        height: Height of the normalized video (even, at most ``max_height``).
        fps: Average frame rate of the source (timestamps are kept as they were).
        duration: Duration of the source in seconds.
        reencoded: False when the video stream was copied as it was (already compliant).
        audio_coverage: How much of the source's audio decoded (None when it has no audio
            stream); ``audio_path`` is None when none of it did.
    """

    video_path: Path
    audio_path: Path | None
    width: int
    height: int
    fps: float
    duration: float
    reencoded: bool = True
    audio_coverage: Coverage | None = None


def target_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """Compute the output size: same aspect, height at most ``max_height``, both even, never upscaled.

    Args:
        width: Displayed width of the source (rotation applied).
        height: Displayed height of the source.
        max_height: Largest allowed output height.

    Returns:
        ``(width, height)``, both even and at least 2.

    Raises:
        ValueError: A dimension or ``max_height`` is smaller than 2.
    """
    if width < 1 or height < 1 or max_height < 2:
        raise ValueError(f"invalid size {width}x{height} or max_height {max_height}")
    out_height = min(height, max_height)
    out_height = max(2, out_height - out_height % 2)
    out_width = round(width * out_height / height / 2) * 2
    out_width = max(2, min(out_width, width - width % 2 if width >= 2 else 2))
    return out_width, out_height


def can_copy_video(info: MediaInfo, max_height: int) -> bool:
    """True when the source video stream already meets every normalized-output rule."""
    video = info.video
    if video is None:
        return False
    containers = set(info.container.split(","))
    return (
        video.codec == "h264"
        and video.pix_fmt == "yuv420p"
        and (video.bit_depth or 8) == 8
        and video.rotation == 0
        and video.height <= max_height
        and video.width % 2 == 0
        and video.height % 2 == 0
        and bool(containers & _COPYABLE_CONTAINERS)
    )


@dataclass(frozen=True)
class _X264:
    """How a re-encoded video is encoded."""

    width: int
    height: int
    preset: str
    crf: int
    threads: int


def _video_output(source: Any, video_path: Path, encoding: _X264 | None) -> Any:
    """The video output of the ffmpeg call: a remux when ``encoding`` is None, else H.264."""
    if encoding is None:
        return ffmpeg.output(
            source.video, str(video_path), vcodec="copy", movflags="+faststart", map_metadata=-1
        )
    # ffmpeg applies the display matrix (autorotate) before our filters, so the scale below
    # works on displayed dimensions and the output carries no rotation flag.
    video = source.video.filter("scale", encoding.width, encoding.height, flags="bicubic").filter("setsar", 1)
    return ffmpeg.output(
        video,
        str(video_path),
        vcodec="libx264",
        preset=encoding.preset,
        crf=encoding.crf,
        pix_fmt="yuv420p",
        movflags="+faststart",
        fps_mode="vfr",
        threads=encoding.threads,
        **{"metadata:s:v:0": "rotate=0"},
    )


def normalize(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    max_height: int = 720,
    *,
    info: MediaInfo | None = None,
    preset: str = DEFAULT_PRESET,
    crf: int = DEFAULT_CRF,
    allow_copy: bool = True,
) -> NormalizedMedia:
    """Transcode a video to H.264 MP4 (and its audio to 16 kHz mono WAV) in one ffmpeg call.

    Args:
        src: The source video.
        out_dir: Directory for ``video.mp4`` and ``audio.wav`` (created if missing; existing
            files are overwritten).
        max_height: Largest output height; smaller videos keep their size (never upscaled).
        info: The result of :func:`probe` on ``src`` when the caller already has it.
        preset: x264 speed preset.
        crf: x264 constant rate factor (lower is better quality, bigger files).
        allow_copy: Remux instead of re-encoding when the source is already compliant.

    Returns:
        Paths and facts of the outputs.

    Raises:
        MediaError: The source is unreadable (see :func:`probe`).
        FFmpegError: ffmpeg failed; the message carries the end of its stderr.
    """
    info = info or probe(src)
    if info.video is None:
        raise MediaError(src, "normalize needs a video stream")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video_path = out / VIDEO_FILENAME
    coverage = audio_coverage(src) if info.audio is not None else None
    decodable_audio = coverage is not None and coverage.decoded_seconds > 0
    audio_path = out / AUDIO_FILENAME if decodable_audio else None
    if coverage is not None and not decodable_audio:
        logger.warning("%s: no audio packet decodes; normalizing the video only", src)
    width, height = target_size(info.video.width, info.video.height, max_height)
    copy = allow_copy and can_copy_video(info, max_height)

    # One thread per core for the decoder and for x264 (whose default is 1.5 per core): the
    # same throughput on small machines, and each thread fewer holds fewer frames in memory.
    threads = os.cpu_count() or 1
    source = ffmpeg.input(os.fspath(src), threads=threads)
    encoding = None if copy else _X264(width, height, preset, crf, threads)
    outputs = [_video_output(source, video_path, encoding)]
    if audio_path is not None:
        outputs.append(_wav_output(source, audio_path, pad_to=info.duration))
    command = (
        ffmpeg.merge_outputs(*outputs)
        .global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error")
        .overwrite_output()
        .compile(cmd=ffmpeg_executable())
    )
    logger.info("Normalizing %s to %dx%d (%s)%s", src, width, height, out, " by stream copy" if copy else "")
    run_ffmpeg(command, path=src, step="normalize")
    if audio_path is not None and not audio_path.exists():
        audio_path = None
    return NormalizedMedia(
        video_path=video_path,
        audio_path=audio_path,
        width=width,
        height=height,
        fps=info.video.fps,
        duration=info.duration,
        reencoded=not copy,
        audio_coverage=coverage,
    )


def extract_audio(src: str | os.PathLike[str], dest_wav: str | os.PathLike[str]) -> Path | None:
    """Write the first audio stream of ``src`` as 16 kHz mono 16-bit WAV on the source's timeline.

    Undecodable stretches become silence of the same length, so times in the WAV are times in
    the source (module docstring).

    Args:
        src: Any media file with or without video.
        dest_wav: Where to write the WAV (overwritten; parent directories are created).

    Returns:
        ``dest_wav`` as a Path, or None when ``src`` has no audio stream.

    Raises:
        MediaError: The source is unreadable (see :func:`probe`).
        FFmpegError: ffmpeg failed.
    """
    info = probe(src, require_video=False)
    if info.audio is None:
        logger.info("%s has no audio stream; nothing to extract", src)
        return None
    dest = Path(dest_wav)
    dest.parent.mkdir(parents=True, exist_ok=True)
    command = (
        _wav_output(ffmpeg.input(os.fspath(src)), dest, pad_to=info.duration)
        .global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "error")
        .overwrite_output()
        .compile(cmd=ffmpeg_executable())
    )
    run_ffmpeg(command, path=src, step="extract audio")
    return dest


def _wav_output(
    source: ffmpeg.nodes.FilterableStream, dest: Path, *, pad_to: float
) -> ffmpeg.nodes.OutputStream:
    """16 kHz mono PCM on the source's timeline: gaps filled by timestamp, the end padded to ``pad_to``."""
    audio = source.audio.filter("aresample", **{"async": 1, "first_pts": 0})
    if pad_to > 0:
        audio = audio.filter("apad", whole_dur=f"{pad_to:.3f}")
    return ffmpeg.output(
        audio,
        str(dest),
        acodec="pcm_s16le",
        ac=1,
        ar=AUDIO_SAMPLE_RATE,
        map_metadata=-1,
    )

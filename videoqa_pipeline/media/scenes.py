"""Scene (shot) detection with PySceneDetect's detectors on cheaply decoded small frames.

PySceneDetect's own decode loop converts every full-size frame to BGR before shrinking it,
which costs more than the decode. Here frames come from :mod:`videoqa_pipeline.media.decode`
already small (and non-reference frames are skipped), and are fed straight to the detector,
timestamped with their real presentation time so variable frame rate video gets true times.

A damaged stream is analysed past its undecodable stretches (:mod:`videoqa_pipeline.media.decode`);
:func:`find_scenes` says how much of it decoded, and scenes end where decoding did when the rest
of the video cannot be read.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass

from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, SceneDetector

from videoqa_pipeline.media.coverage import Coverage, coverage_of
from videoqa_pipeline.media.decode import downscale_factor_for, iter_small_frames, video_stream_seconds
from videoqa_pipeline.media.probe import MediaInfo, probe

logger = logging.getLogger(__name__)

DETECTORS = ("adaptive", "content")
# Frames are analysed at about this width: wide enough for edges, small enough to be cheap.
ANALYSIS_WIDTH = 256


@dataclass(frozen=True)
class Scene:
    """One shot of a video.

    Attributes:
        index: Position in the video, from 0.
        start_seconds: Start time in seconds.
        end_seconds: End time in seconds (the start of the next scene, or the video's end).
        start_frame: First frame number (at the average frame rate).
        end_frame: Frame number one past the last frame of the scene (exclusive).
    """

    index: int
    start_seconds: float
    end_seconds: float
    start_frame: int
    end_frame: int

    @property
    def duration(self) -> float:
        """Length of the scene in seconds."""
        return self.end_seconds - self.start_seconds

    @property
    def middle_seconds(self) -> float:
        """The time halfway through the scene."""
        return (self.start_seconds + self.end_seconds) / 2


def make_detector(name: str, threshold: float | None, min_scene_len_frames: int) -> SceneDetector:
    """Build a PySceneDetect detector by name.

    Args:
        name: One of :data:`DETECTORS`.
        threshold: Detector threshold (adaptive ratio, or content score); None for the default.
        min_scene_len_frames: Shortest scene, in frames at the average frame rate.

    Returns:
        A fresh detector.

    Raises:
        ValueError: Unknown detector name or a negative threshold.
    """
    if threshold is not None and threshold < 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if name == "adaptive":
        return AdaptiveDetector(
            adaptive_threshold=3.0 if threshold is None else threshold,
            min_scene_len=min_scene_len_frames,
        )
    if name == "content":
        return ContentDetector(
            threshold=27.0 if threshold is None else threshold, min_scene_len=min_scene_len_frames
        )
    raise ValueError(f"unknown scene detector {name!r}; choose one of {', '.join(DETECTORS)}")


@dataclass(frozen=True)
class SceneDetection:
    """Scenes and how much of the video they rest on.

    Attributes:
        scenes: The scenes, in order (see :func:`detect_scenes`).
        coverage: Which stretches of the video stream decoded; the scenes end where decoding
            did when the rest is undecodable.
    """

    scenes: list[Scene]
    coverage: Coverage


def detect_scenes(
    path: str | os.PathLike[str],
    detector: str = "adaptive",
    threshold: float | None = None,
    min_scene_len_seconds: float = 0.5,
    downscale: int | None = None,
    *,
    info: MediaInfo | None = None,
) -> list[Scene]:
    """Split a video into scenes: :func:`find_scenes` without the coverage."""
    return find_scenes(path, detector, threshold, min_scene_len_seconds, downscale, info=info).scenes


def find_scenes(
    path: str | os.PathLike[str],
    detector: str = "adaptive",
    threshold: float | None = None,
    min_scene_len_seconds: float = 0.5,
    downscale: int | None = None,
    *,
    info: MediaInfo | None = None,
) -> SceneDetection:
    """Split a video into scenes, and say how much of it could be decoded.

    Args:
        path: The video.
        detector: ``"adaptive"`` (robust to camera motion) or ``"content"`` (plain threshold).
        threshold: Detector threshold; None uses PySceneDetect's default for that detector.
        min_scene_len_seconds: No two cuts closer than this.
        downscale: Integer factor frames are reduced by before analysis; None picks one that
            gives frames about 256 pixels wide.
        info: The result of :func:`probe` when the caller already has it.

    Returns:
        Scenes in order, covering the whole video (up to where decoding stopped, when the rest of
        it is undecodable); a video without cuts is one scene.

    Raises:
        ValueError: Unknown detector, bad threshold or downscale.
        MediaError: The file is unreadable (see :func:`probe`).
    """
    if downscale is not None and downscale < 1:
        raise ValueError(f"downscale must be 1 or more, got {downscale}")
    info = info or probe(path)
    assert info.video is not None  # probe() raises NoVideoStreamError otherwise
    fps = info.video.fps if info.video.fps > 0 else 25.0
    coded_width = info.video.height if info.video.rotation in (90, 270) else info.video.width
    factor = downscale or downscale_factor_for(coded_width, ANALYSIS_WIDTH)
    min_len_frames = max(1, round(min_scene_len_seconds * fps))
    scene_detector = make_detector(detector, threshold, min_len_frames)

    cuts: list[float] = []
    spans: list[tuple[float, float]] = []
    for small in iter_small_frames(path, factor):
        timecode = FrameTimecode(float(small.time), fps)
        cuts.extend(cut.seconds for cut in scene_detector.process_frame(timecode, small.image))
        spans.append((small.time, small.time + 1.0 / fps))
    if spans:
        last = FrameTimecode(float(spans[-1][0]), fps)
        cuts.extend(cut.seconds for cut in scene_detector.post_process(last))
    coverage = coverage_of(spans, video_stream_seconds(path, info.duration))

    end = max(info.duration, spans[-1][1]) if spans else info.duration
    if coverage.decoded_end < coverage.duration:
        end = coverage.decoded_end  # the rest is undecodable: no scene claims it
    scenes = scenes_from_cuts(cuts, end, fps)
    logger.info(
        "%s: %d scene(s) with the %s detector (%d frames analysed, downscale %d, %.1f of %.1f s decoded)",
        path,
        len(scenes),
        detector,
        len(spans),
        factor,
        coverage.decoded_seconds,
        coverage.duration,
    )
    return SceneDetection(scenes, coverage)


def scenes_from_cuts(cuts: list[float], duration: float, fps: float) -> list[Scene]:
    """Turn cut times into contiguous scenes covering ``[0, duration]``.

    Args:
        cuts: Times (seconds) where a new scene starts, in any order; 0 and duplicates ignored.
        duration: Length of the video.
        fps: Average frame rate, for frame numbers.

    Returns:
        At least one scene when ``duration > 0``, else an empty list.
    """
    if duration <= 0:
        return []
    inner = sorted({round(c, 6) for c in cuts if 0 < c < duration})
    bounds = [0.0, *inner, duration]
    scenes = []
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        scenes.append(
            Scene(
                index=index,
                start_seconds=start,
                end_seconds=end,
                start_frame=round(start * fps),
                end_frame=max(round(start * fps) + 1, round(end * fps)),
            )
        )
    return scenes

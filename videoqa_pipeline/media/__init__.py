"""The media core: probe, normalize, scene detection, keyframe selection and extraction.

Pure functions with no Dagster import, so they can be used from the pipeline, the CLI, a
notebook or a test alike. ffmpeg is found by :func:`ffmpeg_executable` (``VIDEOQA_FFMPEG``,
then ``ffmpeg`` on ``PATH``, then the imageio-ffmpeg wheel); probing and decoding use PyAV.
"""

from videoqa_pipeline.media.coverage import Coverage, audio_coverage, coverage_of
from videoqa_pipeline.media.errors import (
    EmptyMediaError,
    FFmpegError,
    MediaError,
    MediaNotFoundError,
    NotMediaError,
    NoVideoStreamError,
    TruncatedMediaError,
)
from videoqa_pipeline.media.frames import Keyframe, extract_keyframes, keyframe_timestamps
from videoqa_pipeline.media.normalize import NormalizedMedia, extract_audio, normalize, target_size
from videoqa_pipeline.media.probe import AudioStreamInfo, MediaInfo, VideoStreamInfo, probe
from videoqa_pipeline.media.sample import SampleVideo, bundled_sample_video, make_sample_video
from videoqa_pipeline.media.scenes import (
    DETECTORS,
    Scene,
    SceneDetection,
    detect_scenes,
    find_scenes,
    scenes_from_cuts,
)
from videoqa_pipeline.media.select import select_scene_indices
from videoqa_pipeline.media.tools import ffmpeg_executable

__all__ = [
    "DETECTORS",
    "AudioStreamInfo",
    "Coverage",
    "EmptyMediaError",
    "FFmpegError",
    "Keyframe",
    "MediaError",
    "MediaInfo",
    "MediaNotFoundError",
    "NoVideoStreamError",
    "NormalizedMedia",
    "NotMediaError",
    "SampleVideo",
    "Scene",
    "SceneDetection",
    "TruncatedMediaError",
    "VideoStreamInfo",
    "audio_coverage",
    "bundled_sample_video",
    "coverage_of",
    "detect_scenes",
    "extract_audio",
    "extract_keyframes",
    "ffmpeg_executable",
    "find_scenes",
    "keyframe_timestamps",
    "make_sample_video",
    "normalize",
    "probe",
    "scenes_from_cuts",
    "select_scene_indices",
    "target_size",
]

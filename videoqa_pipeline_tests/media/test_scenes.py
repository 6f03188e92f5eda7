"""detect_scenes(): cuts found where they were made, per detector, on odd inputs too."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from videoqa_pipeline.media import (
    DETECTORS,
    SampleVideo,
    decode,
    detect_scenes,
    make_sample_video,
    scenes_from_cuts,
)
from videoqa_pipeline_tests.media.conftest import lavfi_video

TOLERANCE = 0.25


@pytest.mark.parametrize("detector", DETECTORS)
def test_cuts_match_known_times(cut_video: SampleVideo, detector: str) -> None:
    scenes = detect_scenes(cut_video.path, detector=detector)
    found = [s.start_seconds for s in scenes[1:]]
    assert len(found) == len(cut_video.cut_times), f"found {found}, expected {cut_video.cut_times}"
    for got, want in zip(found, cut_video.cut_times, strict=True):
        assert abs(got - want) <= TOLERANCE
    # Scenes tile the video without gaps.
    assert scenes[0].start_seconds == 0.0
    assert scenes[-1].end_seconds == pytest.approx(cut_video.duration, abs=0.05)
    for before, after in itertools.pairwise(scenes):
        assert before.end_seconds == after.start_seconds
        assert before.end_frame == after.start_frame
    assert [s.index for s in scenes] == list(range(len(scenes)))


def test_no_cut_is_one_scene(good_mp4: Path) -> None:
    scenes = detect_scenes(good_mp4)
    assert len(scenes) == 1
    assert scenes[0].start_frame == 0 and scenes[0].end_frame == 50
    assert scenes[0].end_seconds == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("case", ["one_frame", "half_second", "vfr", "odd", "mkv", "hevc10", "vp9"])
def test_short_and_unusual_inputs(variants: dict[str, Path], case: str) -> None:
    if case not in variants:
        pytest.skip(f"this ffmpeg cannot encode the {case} test file")
    scenes = detect_scenes(variants[case])
    assert len(scenes) == 1
    assert scenes[0].end_seconds > 0


def test_min_scene_len_merges_short_scenes(cut_video: SampleVideo) -> None:
    scenes = detect_scenes(cut_video.path, detector="content", min_scene_len_seconds=2.2)
    assert len(scenes) < len(cut_video.cut_times) + 1
    for scene in scenes[:-1]:
        assert scene.duration >= 2.2 - TOLERANCE


def test_bad_arguments(cut_video: SampleVideo) -> None:
    with pytest.raises(ValueError, match="unknown scene detector"):
        detect_scenes(cut_video.path, detector="histogram-of-doom")
    with pytest.raises(ValueError):
        detect_scenes(cut_video.path, downscale=0)


def test_explicit_downscale_gives_same_cuts(cut_video: SampleVideo) -> None:
    coarse = [s.start_seconds for s in detect_scenes(cut_video.path, downscale=4)]
    fine = [s.start_seconds for s in detect_scenes(cut_video.path, downscale=1)]
    assert coarse == pytest.approx(fine, abs=TOLERANCE)


def test_scenes_from_cuts() -> None:
    scenes = scenes_from_cuts([3.0, 0.0, 1.0, 1.0, 9.0], 5.0, 10.0)
    assert [(s.start_seconds, s.end_seconds) for s in scenes] == [(0.0, 1.0), (1.0, 3.0), (3.0, 5.0)]
    assert [(s.start_frame, s.end_frame) for s in scenes] == [(0, 10), (10, 30), (30, 50)]
    assert scenes_from_cuts([], 0.0, 25.0) == []


@pytest.fixture(scope="module")
def pyramid_video(media_dir: Path) -> SampleVideo:
    """x264 at a slow preset: B-pyramid, with P-frames predicted from B-frames."""
    return make_sample_video(
        media_dir / "pyramid.mp4",
        scene_seconds=(1.5, 2.0, 1.2, 2.5, 1.8),
        width=320,
        height=180,
        fps=25,
        preset="slow",
    )


def test_skipping_b_frames_finds_the_same_cuts_as_exact_decoding(
    pyramid_video: SampleVideo, monkeypatch: pytest.MonkeyPatch
) -> None:
    every_frame = [f.time for f in decode.iter_small_frames(pyramid_video.path, 4, skip_frames=False)]
    skipped = [f.time for f in decode.iter_small_frames(pyramid_video.path, 4)]
    assert set(skipped) < set(every_frame)
    assert len(skipped) < len(every_frame) / 2, "B-frames were not skipped"
    assert max(b - a for a, b in itertools.pairwise(skipped)) <= decode.MAX_ANALYSIS_GAP_SECONDS

    fast = {detector: detect_scenes(pyramid_video.path, detector=detector) for detector in DETECTORS}
    monkeypatch.setattr(decode, "initial_skip_mode", lambda stream: "NONREF")  # the always-exact mode
    for detector in DETECTORS:
        assert fast[detector] == detect_scenes(pyramid_video.path, detector=detector)
    assert len(fast["adaptive"]) == len(pyramid_video.cut_times) + 1


def test_b_frame_skipping_falls_back_when_frames_get_too_far_apart(media_dir: Path) -> None:
    # 16 consecutive B-frames: skipping them all, or even the non-reference ones, leaves frames
    # too far apart for cut detection.
    path = lavfi_video(
        media_dir / "many-b.mp4",
        "-c:v",
        "libx264",
        "-bf",
        "16",
        "-b_strategy",
        "0",
        "-pix_fmt",
        "yuv420p",
        source="testsrc2=s=320x240:r=25:d=6",
        audio=False,
    )
    times = [f.time for f in decode.iter_small_frames(path, 4)]
    every_frame = [f.time for f in decode.iter_small_frames(path, 4, skip_frames=False)]
    assert max(b - a for a, b in itertools.pairwise(times)) > decode.MAX_ANALYSIS_GAP_SECONDS
    # Frames already queued in the threaded decoder come out with the old setting; after
    # that, skipping steps down until no frame is skipped.
    assert [t for t in times if t >= 3.0] == [t for t in every_frame if t >= 3.0]

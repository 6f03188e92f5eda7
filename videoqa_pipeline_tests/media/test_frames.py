"""extract_keyframes(): one JPEG per time, right order, exact times, sharpest nearby, rotation applied."""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from videoqa_pipeline.media import (
    SampleVideo,
    detect_scenes,
    extract_keyframes,
    keyframe_timestamps,
    probe,
    select_scene_indices,
)


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "valid JPEG"
    return image


def test_keyframe_timestamps_are_scene_middles(cut_video: SampleVideo) -> None:
    scenes = detect_scenes(cut_video.path)
    indices = select_scene_indices(len(scenes), 3)
    times = keyframe_timestamps(scenes, indices)
    assert len(times) == 3
    for index, time in zip(indices, times, strict=True):
        assert scenes[index].start_seconds < time < scenes[index].end_seconds


@pytest.mark.parametrize("pick_sharpest", [True, False])
@pytest.mark.parametrize("seek_threshold", [2.0, 0.0, math.inf])
def test_count_order_and_times(cut_video: SampleVideo, pick_sharpest: bool, seek_threshold: float) -> None:
    # Deliberately unsorted and with a repeat: results follow the request order.
    requested = [5.0, 0.6, 9.2, 5.0, 12.3]
    frames = extract_keyframes(
        cut_video.path, requested, pick_sharpest=pick_sharpest, seek_threshold_seconds=seek_threshold
    )
    assert len(frames) == len(requested)
    frame_period = 1 / 25
    for want, frame in zip(requested, frames, strict=True):
        limit = 0.2 + frame_period if pick_sharpest else frame_period / 2 + 1e-6
        assert abs(frame.timestamp - want) <= limit
        # Timestamps are real frame times: multiples of the frame period.
        assert frame.timestamp / frame_period == pytest.approx(
            round(frame.timestamp / frame_period), abs=1e-3
        )
        image = decode_jpeg(frame.jpeg)
        assert (image.shape[1], image.shape[0]) == (frame.width, frame.height) == (320, 180)
        assert (frame.sharpness is not None) is pick_sharpest
    assert frames[0].timestamp == frames[3].timestamp


def test_seek_and_single_pass_agree(cut_video: SampleVideo) -> None:
    times = [0.5, 3.0, 4.1, 7.7, 12.0]
    seek = extract_keyframes(cut_video.path, times, pick_sharpest=False, seek_threshold_seconds=0.0)
    scan = extract_keyframes(cut_video.path, times, pick_sharpest=False, seek_threshold_seconds=math.inf)
    assert [f.timestamp for f in seek] == [f.timestamp for f in scan]
    for a, b in zip(seek, scan, strict=True):
        assert np.abs(decode_jpeg(a.jpeg).astype(int) - decode_jpeg(b.jpeg).astype(int)).mean() < 2


def test_sharpest_frame_is_at_least_as_sharp(media_dir: Path) -> None:
    from videoqa_pipeline_tests.media.conftest import ffmpeg

    # Blurred everywhere except one sharp frame, a little before 0.5 s.
    blurry = media_dir / "blurry.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=320x240:r=25:d=2",
        "-vf",
        "split[a][b];[b]gblur=sigma=6[blur];[a][blur]blend=all_expr='if(eq(N,12),A,B)'",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-qp",
        "0",
        "-pix_fmt",
        "yuv420p",
        str(blurry),
    )
    # Find the one sharp frame independently of the library.
    with av.open(str(blurry)) as container:
        focus = {
            round(float(f.time), 3): cv2.Laplacian(f.to_ndarray(format="gray"), cv2.CV_64F).var()
            for f in container.decode(video=0)
        }
    sharp_time = max(focus, key=lambda t: focus[t])
    assert 0.35 < sharp_time < 0.5
    exact = extract_keyframes(blurry, [0.5], pick_sharpest=False)[0]
    sharp = extract_keyframes(blurry, [0.5], pick_sharpest=True)[0]
    assert exact.timestamp == pytest.approx(0.5, abs=0.021)
    assert sharp.timestamp == pytest.approx(sharp_time)
    assert sharp.sharpness is not None and sharp.sharpness > 0
    # The sharp JPEG holds more detail than the blurred one.
    detail = [cv2.Laplacian(decode_jpeg(k.jpeg), cv2.CV_64F).var() for k in (exact, sharp)]
    assert detail[1] > 5 * detail[0]


def test_max_width_and_no_upscale(variants: dict[str, Path]) -> None:
    small = extract_keyframes(variants["uhd"], [0.2], max_width=400)[0]
    assert (small.width, small.height) == (400, 225)
    native = extract_keyframes(variants["no_audio"], [1.0], max_width=4000)[0]
    assert (native.width, native.height) == (320, 240)


def test_rotation_applied(rotated_mp4: Path) -> None:
    frame = extract_keyframes(rotated_mp4, [0.5])[0]
    assert (frame.width, frame.height) == (360, 640)
    image = decode_jpeg(frame.jpeg)
    top, bottom = image[:100].mean(axis=(0, 1)), image[-100:].mean(axis=(0, 1))
    # Same orientation as ffmpeg's autorotation (see test_normalize.test_rotation_is_applied):
    # ffmpeg puts the source's left half (red) at the top for this display matrix.
    from videoqa_pipeline.media import normalize

    normalized = normalize(rotated_mp4, rotated_mp4.parent / "rotated-normalized")
    reference = decode_jpeg(extract_keyframes(normalized.video_path, [0.5])[0].jpeg)
    ref_top = reference[:100].mean(axis=(0, 1))
    assert int(np.argmax(top)) == int(np.argmax(ref_top))
    assert int(np.argmax(top)) != int(np.argmax(bottom))


@pytest.mark.parametrize("case", ["one_frame", "half_second", "vfr", "odd", "hevc10", "vp9", "mkv", "mov"])
def test_edges_of_the_video(variants: dict[str, Path], case: str) -> None:
    if case not in variants:
        pytest.skip(f"this ffmpeg cannot encode the {case} test file")
    info = probe(variants[case])
    frames = extract_keyframes(variants[case], [-1.0, 0.0, info.duration / 2, info.duration + 5.0])
    assert len(frames) == 4
    assert frames[0].timestamp == frames[1].timestamp == pytest.approx(0.0, abs=0.25)
    assert frames[3].timestamp <= info.duration
    assert all(f.jpeg[:2] == b"\xff\xd8" for f in frames)


def test_empty_request(good_mp4: Path) -> None:
    assert extract_keyframes(good_mp4, []) == []


def test_bad_arguments(good_mp4: Path) -> None:
    with pytest.raises(ValueError):
        extract_keyframes(good_mp4, [0.0], max_width=1)
    with pytest.raises(ValueError):
        extract_keyframes(good_mp4, [0.0], jpeg_quality=0)

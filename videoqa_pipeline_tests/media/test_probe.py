"""probe(): every kind of bad input ends in the right MediaError, every good one in the right facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoqa_pipeline.media import (
    EmptyMediaError,
    MediaError,
    MediaNotFoundError,
    NotMediaError,
    NoVideoStreamError,
    TruncatedMediaError,
    probe,
)

BAD_CASES = [
    ("missing", MediaNotFoundError, "not found"),
    ("empty", EmptyMediaError, "empty"),
    ("random", NotMediaError, "not a media file"),
    ("text", NotMediaError, "text file"),
    ("png", NotMediaError, "still image"),
    ("jpeg_named_mp4", NotMediaError, "still image"),
    ("audio_only", NoVideoStreamError, "no video stream"),
    ("truncated", TruncatedMediaError, "moov"),
    ("truncated_faststart", TruncatedMediaError, "truncated"),
]


@pytest.mark.parametrize(("case", "error", "words"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_raises_named_error(
    bad_inputs: dict[str, Path], case: str, error: type[MediaError], words: str
) -> None:
    path = bad_inputs[case]
    with pytest.raises(error) as caught:
        probe(path)
    message = str(caught.value)
    assert str(path) in message, "the message names the file"
    assert words in message
    assert caught.value.permanent is True
    assert isinstance(caught.value, MediaError)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(MediaNotFoundError, match="not a regular file"):
        probe(tmp_path)


def test_audio_only_allowed_when_video_not_required(bad_inputs: dict[str, Path]) -> None:
    info = probe(bad_inputs["audio_only"], require_video=False)
    assert info.video is None
    assert info.audio is not None and info.audio.codec == "aac"
    assert info.to_dict()["video"] is None


def test_good_mp4_facts(good_mp4: Path) -> None:
    info = probe(good_mp4)
    assert info.container.startswith("mov,mp4")
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.size == good_mp4.stat().st_size
    assert info.video is not None and info.audio is not None
    assert (info.video.codec, info.video.width, info.video.height) == ("h264", 320, 240)
    assert info.video.fps == pytest.approx(25.0)
    assert info.video.frame_count == 50
    assert info.video.vfr is False
    assert (info.video.pix_fmt, info.video.bit_depth, info.video.rotation) == ("yuv420p", 8, 0)
    assert info.audio.sample_rate == 44100 and info.audio.channels == 1


def test_file_uri(good_mp4: Path) -> None:
    assert probe(good_mp4.as_uri()).size == good_mp4.stat().st_size


def test_to_dict_shape(good_mp4: Path) -> None:
    data = probe(good_mp4).to_dict()
    assert {"duration", "container", "size", "video", "audio"} <= set(data)
    assert {"codec", "width", "height", "fps", "vfr", "rotation"} <= set(data["video"])
    assert data["audio"] == {"codec": "aac", "sample_rate": 44100, "channels": 1}


def test_rotated_phone_video_reports_displayed_size(rotated_mp4: Path) -> None:
    info = probe(rotated_mp4)
    assert info.video is not None
    assert info.video.rotation in (90, 270)
    assert (info.video.width, info.video.height) == (360, 640)


def test_variable_frame_rate_is_flagged(variants: dict[str, Path], good_mp4: Path) -> None:
    info = probe(variants["vfr"])
    assert info.video is not None and info.video.vfr is True
    assert info.duration == pytest.approx(4.0, abs=0.2)


@pytest.mark.parametrize(
    ("case", "size", "audio"),
    [
        ("no_audio", (320, 240), False),
        ("one_frame", (320, 240), False),
        ("half_second", (320, 240), False),
        ("mkv", (320, 240), True),
        ("mov", (320, 240), True),
        ("odd", (1001, 555), False),
        ("uhd", (3840, 2160), False),
    ],
)
def test_readable_variants(variants: dict[str, Path], case: str, size: tuple[int, int], audio: bool) -> None:
    info = probe(variants[case])
    assert info.video is not None
    assert (info.video.width, info.video.height) == size
    assert (info.audio is not None) is audio
    assert info.video.vfr is False


def test_one_frame_and_short_durations(variants: dict[str, Path]) -> None:
    one = probe(variants["one_frame"])
    assert one.video is not None and one.video.frame_count == 1
    half = probe(variants["half_second"])
    assert half.duration == pytest.approx(0.5, abs=0.05)


def test_ten_bit_hevc(variants: dict[str, Path]) -> None:
    if "hevc10" not in variants:
        pytest.skip("this ffmpeg has no libx265 encoder to make a 10-bit HEVC file")
    info = probe(variants["hevc10"])
    assert info.video is not None
    assert info.video.codec == "hevc"
    assert info.video.bit_depth == 10


def test_vp9_webm(variants: dict[str, Path]) -> None:
    if "vp9" not in variants:
        pytest.skip("this ffmpeg has no libvpx-vp9 encoder to make a WebM file")
    info = probe(variants["vp9"])
    assert info.container.startswith("matroska")
    assert info.video is not None and info.video.codec == "vp9"
    assert info.audio is not None and info.audio.codec == "opus"

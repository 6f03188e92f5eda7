"""normalize() / extract_audio(): the one format every later stage reads."""

from __future__ import annotations

import importlib
import struct
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from videoqa_pipeline.media import (
    NotMediaError,
    SampleVideo,
    extract_audio,
    normalize,
    probe,
    target_size,
)
from videoqa_pipeline.media import tools as media_tools


def top_level_atoms(path: Path) -> list[str]:
    """The MP4 box types at the top level, in file order."""
    atoms = []
    with path.open("rb") as handle:
        while header := handle.read(8):
            if len(header) < 8:
                break
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", handle.read(8))[0]
                handle.seek(size - 16, 1)
            elif size == 0:
                atoms.append(kind.decode("latin-1"))
                break
            else:
                handle.seek(size - 8, 1)
            atoms.append(kind.decode("latin-1"))
    return atoms


@pytest.mark.parametrize(
    ("size", "max_height", "expected"),
    [
        ((1920, 1080), 720, (1280, 720)),
        ((640, 360), 720, (640, 360)),
        ((1001, 555), 720, (1000, 554)),
        ((1080, 1920), 720, (404, 720)),
        ((3840, 2160), 720, (1280, 720)),
        ((320, 240), 100, (134, 100)),
    ],
)
def test_target_size(size: tuple[int, int], max_height: int, expected: tuple[int, int]) -> None:
    width, height = target_size(*size, max_height)
    assert (width, height) == expected
    assert width % 2 == 0 and height % 2 == 0
    assert width <= size[0] and height <= size[1]


def test_normalize_with_audio_one_ffmpeg_call(
    cut_video: SampleVideo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    real = media_tools.run_ffmpeg

    def counting(args: list[str], **kwargs: object) -> None:
        calls.append(list(args))
        real(args, **kwargs)  # type: ignore[arg-type]

    # The package re-exports the function `normalize`, so patch the module object itself.
    monkeypatch.setattr(importlib.import_module("videoqa_pipeline.media.normalize"), "run_ffmpeg", counting)
    result = normalize(cut_video.path, tmp_path)
    assert len(calls) == 1, "video and audio come out of one ffmpeg invocation"
    assert result.video_path == tmp_path / "video.mp4"
    assert result.audio_path == tmp_path / "audio.wav"
    assert (result.width, result.height) == (320, 180), "never upscaled"

    info = probe(result.video_path)
    assert info.video is not None
    assert (info.video.codec, info.video.pix_fmt) == ("h264", "yuv420p")
    assert info.audio is None
    assert info.duration == pytest.approx(cut_video.duration, abs=0.1)

    atoms = top_level_atoms(result.video_path)
    assert atoms.index("moov") < atoms.index("mdat"), f"faststart: moov before mdat, got {atoms}"

    with wave.open(str(result.audio_path)) as wav:
        assert wav.getframerate() == 16000
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getnframes() / 16000 == pytest.approx(cut_video.duration, abs=0.1)
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    assert np.abs(samples).max() > 1000, "the audio carries sound, not silence"


def test_no_audio_gives_no_wav(variants: dict[str, Path], tmp_path: Path) -> None:
    result = normalize(variants["no_audio"], tmp_path)
    assert result.audio_path is None
    assert not (tmp_path / "audio.wav").exists()


def test_downscales_4k_and_fixes_odd_sizes(variants: dict[str, Path], tmp_path: Path) -> None:
    uhd = normalize(variants["uhd"], tmp_path / "uhd")
    assert (uhd.width, uhd.height) == (1280, 720)
    odd = normalize(variants["odd"], tmp_path / "odd")
    info = probe(odd.video_path)
    assert info.video is not None
    assert (info.video.width, info.video.height) == (odd.width, odd.height) == (1000, 554)
    assert info.video.pix_fmt == "yuv420p"


def test_rotation_is_applied(rotated_mp4: Path, tmp_path: Path) -> None:
    result = normalize(rotated_mp4, tmp_path)
    info = probe(result.video_path)
    assert info.video is not None
    assert info.video.rotation == 0, "no display matrix left in the output"
    assert (info.video.width, info.video.height) == (360, 640)
    with av.open(str(result.video_path)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    # The source is red on the left, blue on the right; rotated 90° they are top and bottom.
    top, bottom = (
        frame[: frame.shape[0] // 4].mean(axis=(0, 1)),
        frame[-frame.shape[0] // 4 :].mean(axis=(0, 1)),
    )
    assert {int(np.argmax(top)), int(np.argmax(bottom))} == {0, 2}


@pytest.mark.parametrize("case", ["mkv", "mov", "vfr", "hevc10", "vp9", "one_frame", "half_second"])
def test_other_inputs_normalize(variants: dict[str, Path], tmp_path: Path, case: str) -> None:
    if case not in variants:
        pytest.skip(f"this ffmpeg cannot encode the {case} test file")
    result = normalize(variants[case], tmp_path)
    info = probe(result.video_path)
    assert info.video is not None and info.video.pix_fmt == "yuv420p" and info.video.bit_depth == 8
    assert info.video.frame_count is not None and info.video.frame_count >= 1


def test_max_height(good_mp4: Path, tmp_path: Path) -> None:
    result = normalize(good_mp4, tmp_path, max_height=120)
    info = probe(result.video_path)
    assert info.video is not None and (info.video.width, info.video.height) == (160, 120)


def test_bad_input_raises_before_ffmpeg(bad_inputs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(NotMediaError):
        normalize(bad_inputs["text"], tmp_path)


def test_extract_audio(cut_video: SampleVideo, variants: dict[str, Path], tmp_path: Path) -> None:
    wav_path = extract_audio(cut_video.path, tmp_path / "sub" / "a.wav")
    assert wav_path is not None
    with wave.open(str(wav_path)) as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (16000, 1)
    assert extract_audio(variants["no_audio"], tmp_path / "none.wav") is None


def test_compliant_h264_is_remuxed_not_reencoded(cut_video: SampleVideo, tmp_path: Path) -> None:
    copied = normalize(cut_video.path, tmp_path / "copy")
    encoded = normalize(cut_video.path, tmp_path / "encode", allow_copy=False)
    assert not copied.reencoded and encoded.reencoded
    with av.open(str(cut_video.path)) as source, av.open(str(copied.video_path)) as result:
        source_packets = [bytes(p) for p in source.demux(video=0) if p.size]
        result_packets = [bytes(p) for p in result.demux(video=0) if p.size]
    assert result_packets == source_packets, "the compressed video is carried over bit for bit"
    atoms = top_level_atoms(copied.video_path)
    assert atoms.index("moov") < atoms.index("mdat")
    assert copied.audio_path is not None and copied.audio_path.stat().st_size > 0


def test_sources_needing_changes_are_reencoded(
    variants: dict[str, Path], rotated_mp4: Path, tmp_path: Path
) -> None:
    assert normalize(variants["uhd"], tmp_path / "uhd").reencoded
    assert normalize(variants["odd"], tmp_path / "odd").reencoded
    assert normalize(rotated_mp4, tmp_path / "rotated").reencoded
    small = normalize(variants["no_audio"], tmp_path / "small", max_height=100)
    assert small.reencoded and small.height <= 100

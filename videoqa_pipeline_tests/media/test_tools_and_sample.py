"""ffmpeg discovery, error details, and the sample-video helpers."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest

from videoqa_pipeline.media import (
    FFmpegError,
    MediaError,
    bundled_sample_video,
    detect_scenes,
    extract_audio,
    ffmpeg_executable,
    make_sample_video,
    probe,
)
from videoqa_pipeline.media.sample import espeak_available
from videoqa_pipeline.media.tools import run_ffmpeg


@pytest.fixture
def fresh_ffmpeg_cache():
    ffmpeg_executable.cache_clear()
    yield
    ffmpeg_executable.cache_clear()


def test_env_override_wins(monkeypatch: pytest.MonkeyPatch, fresh_ffmpeg_cache: None) -> None:
    import imageio_ffmpeg

    bundled = imageio_ffmpeg.get_ffmpeg_exe()
    monkeypatch.setenv("VIDEOQA_FFMPEG", bundled)
    assert ffmpeg_executable() == bundled


def test_env_override_must_exist(monkeypatch: pytest.MonkeyPatch, fresh_ffmpeg_cache: None) -> None:
    monkeypatch.setenv("VIDEOQA_FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(FFmpegError, match="VIDEOQA_FFMPEG"):
        ffmpeg_executable()


def test_wheel_binary_when_no_system_ffmpeg(
    monkeypatch: pytest.MonkeyPatch, fresh_ffmpeg_cache: None
) -> None:
    monkeypatch.delenv("VIDEOQA_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    path = ffmpeg_executable()
    assert "imageio_ffmpeg" in path


def test_pipeline_works_with_wheel_ffmpeg(
    monkeypatch: pytest.MonkeyPatch, fresh_ffmpeg_cache: None, tmp_path: Path
) -> None:
    import imageio_ffmpeg

    from videoqa_pipeline.media import normalize

    monkeypatch.setenv("VIDEOQA_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
    sample = make_sample_video(tmp_path / "s.mp4", scene_seconds=(1.0, 1.0), width=160, height=90)
    result = normalize(sample.path, tmp_path / "n")
    assert probe(result.video_path).video is not None
    assert result.audio_path is not None


def test_ffmpeg_error_keeps_stderr_tail(tmp_path: Path) -> None:
    with pytest.raises(FFmpegError) as caught:
        run_ffmpeg(
            [ffmpeg_executable(), "-i", str(tmp_path / "nope.mp4"), "-f", "null", "-"],
            path="x.mp4",
            step="test",
        )
    error = caught.value
    assert error.returncode not in (None, 0)
    assert "nope.mp4" in error.stderr_tail
    assert str(error).startswith("x.mp4: test failed")
    assert error.permanent is True


def test_killed_ffmpeg_is_retryable() -> None:
    error = FFmpegError("a.mp4", "normalize failed", returncode=-9)
    assert error.permanent is False
    assert isinstance(error, MediaError)


def test_make_sample_video_cuts_and_speech(tmp_path: Path) -> None:
    sample = make_sample_video(tmp_path / "s.mp4", scene_seconds=(1.0, 2.0, 1.6), speech="Hello there.")
    assert sample.cut_times == [1.0, 3.0]
    assert sample.duration == pytest.approx(4.6)
    info = probe(sample.path)
    assert info.duration == pytest.approx(4.6, abs=0.1)
    assert info.audio is not None
    if espeak_available():
        assert sample.speech_text == "Hello there."
    else:
        assert sample.speech_text is None
    no_audio = make_sample_video(tmp_path / "n.mp4", scene_seconds=(1.0,), audio=False)
    assert probe(no_audio.path).audio is None
    with pytest.raises(ValueError):
        make_sample_video(tmp_path / "bad.mp4", width=101)


def test_speech_is_real_speech(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    import numpy as np

    sample = make_sample_video(tmp_path / "s.mp4", scene_seconds=(3.0,), speech="One two three four.")
    wav_path = extract_audio(sample.path, tmp_path / "a.wav")
    assert wav_path is not None
    with wave.open(str(wav_path)) as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(float)
    # Speech has pauses: loudness varies a lot between 50 ms windows (a tone would not).
    windows = samples[: len(samples) // 800 * 800].reshape(-1, 800)
    loudness = np.sqrt((windows**2).mean(axis=1))
    assert loudness.max() > 500
    assert (loudness < loudness.max() * 0.05).sum() >= 3


def test_bundled_sample() -> None:
    path = bundled_sample_video()
    assert path.stat().st_size < 3_500_000
    info = probe(path)
    assert 20 <= info.duration <= 30
    assert info.audio is not None
    assert len(detect_scenes(path)) >= 5

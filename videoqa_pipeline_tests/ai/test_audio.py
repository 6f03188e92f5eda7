"""Silence-based splitting (uploads over the API size limit, long recordings) and windows of a WAV."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from videoqa_pipeline.ai.audio import (
    cut_wav,
    detect_silences,
    ffmpeg_exe,
    is_speech_wav,
    plan_chunks,
    read_wav_window,
    wav_duration,
)


def test_plan_cuts_inside_silences_and_covers_everything() -> None:
    silences = [(4.0, 5.0), (9.0, 9.6), (17.0, 18.0)]
    chunks = plan_chunks(25.0, 10.0, silences)
    # The latest silence in the second half of each 10 s window wins: 9.3 (not 4.5), then 17.5.
    assert chunks == [(0.0, 9.3), (9.3, 17.5), (17.5, 25.0)]
    assert all(end - start <= 10.0 for start, end in chunks)


def test_plan_cuts_at_the_limit_inside_a_silence_that_straddles_it() -> None:
    assert plan_chunks(20.0, 10.0, [(9.0, 12.0)]) == [(0.0, 10.0), (10.0, 20.0)]


def test_plan_cuts_hard_when_there_is_no_silence() -> None:
    assert plan_chunks(25.0, 10.0, []) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert plan_chunks(5.0, 10.0, []) == [(0.0, 5.0)]


def test_silences_found_in_gapped_speech(gapped_speech_wav: Path, tmp_path: Path) -> None:
    silences = detect_silences(gapped_speech_wav)
    long_gaps = [s for s in silences if s[1] - s[0] >= 1.0]
    assert len(long_gaps) >= 2, silences
    chunk = cut_wav(gapped_speech_wav, 1.0, 3.5, tmp_path / "chunk.wav")
    assert wav_duration(chunk.path) == pytest.approx(2.5, abs=0.05)
    assert chunk.offset == 1.0


def test_a_window_of_a_wav_is_read_alone_as_float_samples(gapped_speech_wav: Path, tmp_path: Path) -> None:
    assert is_speech_wav(gapped_speech_wav)
    whole = read_wav_window(gapped_speech_wav, 0.0, wav_duration(gapped_speech_wav))
    window = read_wav_window(gapped_speech_wav, 1.0, 3.5)
    assert window.dtype == np.float32 and len(window) == 40_000
    assert np.array_equal(window, whole[16_000:56_000]) and 0 < np.abs(window).max() <= 1.0
    # Past the end: what there is, never an error.
    assert len(read_wav_window(gapped_speech_wav, wav_duration(gapped_speech_wav) - 0.5, 1e6)) == 8_000
    stereo = tmp_path / "stereo.wav"
    subprocess.run(
        [ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(gapped_speech_wav), "-ac", "2", "-ar", "44100",
         str(stereo)],
        check=True,
    )  # fmt: skip
    assert not is_speech_wav(stereo) and not is_speech_wav(tmp_path / "missing.wav")


def test_long_speech_reaches_the_model_in_bounded_windows(
    gapped_speech_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the recording's length, the model gets at most ``window_seconds`` of audio at once."""
    from videoqa_pipeline.ai import local_asr
    from videoqa_pipeline.ai.local_asr import LocalWhisperTranscriber

    read: list[float] = []

    def recording_read(path: str | Path, start: float, end: float) -> np.ndarray:
        samples = read_wav_window(path, start, end)
        read.append(len(samples) / 16_000)
        return samples

    monkeypatch.setattr(local_asr, "read_wav_window", recording_read)
    transcriber = LocalWhisperTranscriber("tiny.en")
    transcriber.window_seconds = 6.0
    transcript = transcriber.transcribe(gapped_speech_wav, language="en")
    assert len(read) >= 2 and max(read) <= 6.0 + 1e-6
    assert sum(read) == pytest.approx(wav_duration(gapped_speech_wav), abs=0.01)
    assert {"fox", "pipelines", "indexed"} <= set(transcript.text.lower().replace(".", " ").split())
    starts = [segment.start for segment in transcript.segments]
    assert starts == sorted(starts) and transcript.duration == pytest.approx(sum(read), abs=0.01)

"""Silence-based splitting used for uploads over the API size limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from videoqa_pipeline.ai.audio import cut_wav, detect_silences, plan_chunks, wav_duration


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

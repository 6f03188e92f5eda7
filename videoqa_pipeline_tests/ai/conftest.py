"""Fixtures of the ai tests: speech generated with espeak-ng, frames drawn with OpenCV, a local API server."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from videoqa_pipeline.ai.audio import ffmpeg_exe
from videoqa_pipeline_tests.ai.openai_test_server import OpenAITestServer

SPEECH_TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Video pipelines turn raw footage into searchable knowledge. "
    "Every scene is described and every word is indexed."
)


def synthesize_speech(
    text: str, dest: Path, gap_seconds: float = 0.0, *, voice: str | None = None, speed: int = 150
) -> Path:
    """Speak ``text`` with espeak-ng into a 16 kHz mono WAV; sentences separated by ``gap_seconds`` of silence.

    ``voice`` is an espeak-ng voice (a language code such as ``de``); default English.
    """
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng); speech fixtures need it")
    raw = dest.with_suffix(".raw.wav")
    sentences = [s.strip() + "." for s in text.split(".") if s.strip()] if gap_seconds else [text]
    parts = []
    for index, sentence in enumerate(sentences):
        part = dest.with_name(f"{dest.stem}.{index}.wav")
        subprocess.run(
            ["espeak-ng", *(["-v", voice] if voice else []), "-s", str(speed), "-w", str(part), sentence],
            check=True,
        )
        parts.append(part)
    inputs: list[str] = []
    for part in parts:
        inputs += ["-i", str(part)]
    filters = "".join(f"[{i}:a]aresample=16000,apad=pad_dur={gap_seconds}[a{i}];" for i in range(len(parts)))
    filters += "".join(f"[a{i}]" for i in range(len(parts))) + f"concat=n={len(parts)}:v=0:a=1[out]"
    subprocess.run(
        [
            ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            *inputs,
            "-filter_complex",
            filters,
            "-map",
            "[out]",
            "-ac",
            "1",
            "-ar",
            "16000",
            "-c:a",
            "pcm_s16le",
            str(dest),
        ],
        check=True,
    )
    raw.unlink(missing_ok=True)
    for part in parts:
        part.unlink()
    return dest


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize_speech(SPEECH_TEXT, tmp_path_factory.mktemp("speech") / "speech.wav")


@pytest.fixture(scope="session")
def gapped_speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same sentences with 1.2 s of silence after each: splitting must cut in those gaps."""
    return synthesize_speech(SPEECH_TEXT, tmp_path_factory.mktemp("speech") / "gapped.wav", gap_seconds=1.2)


def text_frame_jpeg(lines: list[str], background: tuple[int, int, int] = (40, 40, 200)) -> bytes:
    """A 1280x720 JPEG with ``lines`` printed large in white on ``background`` (BGR)."""
    image = np.full((720, 1280, 3), background, np.uint8)
    for index, line in enumerate(lines):
        cv2.putText(
            image,
            line,
            (80, 260 + 200 * index),
            cv2.FONT_HERSHEY_DUPLEX,
            4.0,
            (255, 255, 255),
            8,
            cv2.LINE_AA,
        )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return bytes(encoded.tobytes())


@pytest.fixture
def api_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        yield server

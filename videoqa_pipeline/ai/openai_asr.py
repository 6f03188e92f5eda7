"""Transcription with the OpenAI audio API (or a compatible server).

``whisper-1`` (the default) returns ``verbose_json`` with segment and word timestamps. The
``gpt-4o*-transcribe`` models only return plain JSON text; for them each uploaded chunk
becomes one segment spanning the chunk. Files over the API's 25 MB request limit are cut
in silences (ffmpeg ``silencedetect``) into chunks under the limit; each chunk is
transcribed and its times are shifted by the chunk's offset.
"""

from __future__ import annotations

import logging
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

from videoqa_pipeline.ai.audio import cut_wav, detect_silences, plan_chunks, to_wav, wav_duration
from videoqa_pipeline.ai.config import DEFAULT_OPENAI_MODELS, AIConfig, is_openai_endpoint
from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.openai_client import Endpoint, call_api, make_client
from videoqa_pipeline.ai.pricing import estimate_cost
from videoqa_pipeline.ai.types import Transcript, TranscriptSegment, Usage, Word

logger = logging.getLogger(__name__)

API_LIMIT_BYTES = 25 * 1024 * 1024
# Leave room for the multipart envelope and WAV header.
DEFAULT_MAX_UPLOAD_BYTES = API_LIMIT_BYTES - 512 * 1024
TEXT_ONLY_MODELS = ("gpt-4o-transcribe", "gpt-4o-mini-transcribe")

# verbose_json reports the language as an English name; the rest of the pipeline uses ISO codes.
_LANGUAGE_CODES = {
    "english": "en", "german": "de", "french": "fr", "spanish": "es", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "russian": "ru", "chinese": "zh", "japanese": "ja", "korean": "ko", "arabic": "ar",
    "hindi": "hi", "turkish": "tr", "polish": "pl", "swedish": "sv", "ukrainian": "uk", "czech": "cs",
    "danish": "da", "finnish": "fi", "greek": "el", "hebrew": "he", "indonesian": "id", "norwegian": "no",
    "romanian": "ro", "vietnamese": "vi", "thai": "th", "hungarian": "hu", "catalan": "ca",
}  # fmt: skip


def language_code(value: str | None) -> str | None:
    """Map an API language name (``"english"``) to its ISO 639-1 code; codes pass through."""
    if not value:
        return None
    return _LANGUAGE_CODES.get(value.strip().lower(), value.strip().lower())


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    value = getattr(obj, name, default)
    if value is None and getattr(obj, "model_extra", None):
        value = obj.model_extra.get(name, default)
    return value


class OpenAITranscriber:
    """A :class:`~videoqa_pipeline.ai.types.Transcriber` that calls ``/audio/transcriptions``."""

    def __init__(self, config: AIConfig, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        """Create the client.

        Args:
            config: AI settings (model, key, base URL, retries, prices).
            max_upload_bytes: Files above this size are split; below the API's 25 MB limit.
        """
        self._config = config
        self._client = make_client(config, "transcription")
        self._endpoint = Endpoint.of(config, "transcription")
        self._priced = is_openai_endpoint(config.base_url_for("transcription"))
        self.model_name = config.asr_model or DEFAULT_OPENAI_MODELS["transcription"]
        self.max_upload_bytes = max_upload_bytes

    def transcribe(self, wav_path: str | Path, language: str | None = None) -> Transcript:
        """Transcribe ``wav_path``, splitting it first when it is over the upload limit.

        Args:
            wav_path: Audio file (16 kHz mono WAV is what the pipeline produces).
            language: ISO 639-1 hint, or ``None`` to let the API detect it.

        Returns:
            The transcript, times in seconds from the start of the file.

        Raises:
            AIProviderError: see :func:`~videoqa_pipeline.ai.openai_client.call_api`.
        """
        path = Path(wav_path)
        if not path.is_file():
            raise AIProviderError(
                f"Transcription input {path} does not exist; expected a WAV file from the audio extraction step.",
                permanent=True,
            )
        if path.stat().st_size <= self.max_upload_bytes:
            segments, detected, duration, usage = self._transcribe_file(path, 0.0, language)
            return Transcript(detected, segments, self.model_name, usage, duration)
        return self._transcribe_in_chunks(path, language)

    def _transcribe_in_chunks(self, path: Path, language: str | None) -> Transcript:
        with tempfile.TemporaryDirectory(prefix="videoqa-asr-") as tmp:
            source = path
            try:
                with wave.open(str(path), "rb") as handle:
                    bytes_per_second = handle.getframerate() * handle.getnchannels() * handle.getsampwidth()
            except (wave.Error, EOFError):
                converted = to_wav(path, Path(tmp) / "audio.wav")
                if converted is None:
                    raise AIProviderError(f"{path} has no audio to transcribe.", permanent=True) from None
                source, bytes_per_second = converted, 32000
            total = wav_duration(source)
            max_chunk = max(1.0, (self.max_upload_bytes - 4096) / bytes_per_second)
            # Cut chunks at 16 kHz mono so their size matches the plan even for stereo/48 kHz input.
            max_chunk = min(max_chunk, (self.max_upload_bytes - 4096) / 32000)
            plan = plan_chunks(total, max_chunk, detect_silences(source))
            logger.info("%s is over the upload limit: transcribing %d chunks", path.name, len(plan))
            segments: list[TranscriptSegment] = []
            usage = Usage()
            detected: str | None = None
            for index, (start, end) in enumerate(plan):
                chunk = cut_wav(source, start, end, Path(tmp) / f"chunk{index:04d}.wav")
                chunk_segments, chunk_language, _d, chunk_usage = self._transcribe_file(
                    chunk.path, start, language
                )
                segments.extend(chunk_segments)
                usage += chunk_usage
                detected = detected or chunk_language
                chunk.path.unlink(missing_ok=True)
            return Transcript(detected, segments, self.model_name, usage, total)

    def _transcribe_file(
        self, path: Path, offset: float, language: str | None
    ) -> tuple[list[TranscriptSegment], str | None, float, Usage]:
        text_only = self.model_name.startswith(TEXT_ONLY_MODELS)
        kwargs: dict[str, Any] = {"model": self.model_name}
        if language:
            kwargs["language"] = language
        if text_only:
            kwargs["response_format"] = "json"
        else:
            kwargs["response_format"] = "verbose_json"
            kwargs["timestamp_granularities"] = ["segment", "word"]
        started = time.perf_counter()
        with path.open("rb") as handle:
            response = call_api(
                f"transcribe {path.name} with {self.model_name}",
                lambda: self._client.audio.transcriptions.create(file=handle, **kwargs),
                self._endpoint,
            )
        try:
            duration = float(_field(response, "duration") or 0.0) or wav_duration(path)
        except Exception:
            duration = 0.0
        raw_words = _field(response, "words") or []
        words = [
            Word(
                start=float(_field(w, "start")) + offset,
                end=float(_field(w, "end")) + offset,
                text=str(_field(w, "word", "")).strip(),
            )
            for w in raw_words
        ]
        raw_segments = _field(response, "segments") or []
        segments: list[TranscriptSegment] = []
        if raw_segments:
            for raw in raw_segments:
                start = float(_field(raw, "start")) + offset
                end = float(_field(raw, "end")) + offset
                inside = tuple(w for w in words if start - 0.01 <= w.start < end)
                segments.append(TranscriptSegment(start, end, str(_field(raw, "text", "")).strip(), inside))
        else:
            text = str(_field(response, "text", "") or "").strip()
            if not isinstance(_field(response, "text"), str):
                raise AIProviderError(
                    f"The transcription API returned no text for {path.name} (model {self.model_name}); "
                    f"check that {self._endpoint.setting} names a server that implements /audio/transcriptions.",
                    permanent=False,
                )
            if text:
                segments.append(TranscriptSegment(offset, offset + duration, text, tuple(words)))
        cost = estimate_cost(self._config.prices, self.model_name, audio_seconds=duration, warn=self._priced)
        logger.debug("Transcribed %s via API in %.2fs", path.name, time.perf_counter() - started)
        usage = Usage(requests=1, audio_seconds=duration, cost_usd=cost)
        return segments, language_code(_field(response, "language")) or language, duration, usage

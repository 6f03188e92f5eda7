"""Value types shared by every AI provider.

The Dagster layer stores these as tables and attaches :class:`Usage` to asset metadata, so
they are plain dataclasses with no provider-specific fields: a transcript from the offline
model and one from the OpenAI API look the same to the rest of the pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Usage:
    """What a batch of AI calls consumed, so assets can report volume and cost.

    Offline providers fill the volume fields and leave ``cost_usd`` at zero; the OpenAI
    provider also estimates ``cost_usd`` from the price table in :mod:`.pricing`.
    """

    requests: int = 0
    audio_seconds: float = 0.0
    images: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            requests=self.requests + other.requests,
            audio_seconds=self.audio_seconds + other.audio_seconds,
            images=self.images + other.images,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )

    def to_dict(self) -> dict[str, float | int]:
        """Return the counters as a JSON-friendly dict (cost rounded to 1/1e6 USD)."""
        values = asdict(self)
        values["audio_seconds"] = round(self.audio_seconds, 3)
        values["cost_usd"] = round(self.cost_usd, 6)
        return values


@dataclass(frozen=True)
class Word:
    """One recognised word with its time span in seconds from the start of the audio."""

    start: float
    end: float
    text: str
    probability: float | None = None


@dataclass(frozen=True)
class TranscriptSegment:
    """A stretch of speech (roughly a sentence) with its time span in seconds."""

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()


@dataclass
class Transcript:
    """The result of transcribing one audio file.

    ``language`` is the ISO 639-1 code the speech was transcribed in: detected, or as asked.
    ``language_probability`` is the detector's confidence when it was detected (None when the
    language was given or the provider does not say). ``model`` names the model that actually
    transcribed (the offline default picks one per language).
    """

    language: str | None
    segments: list[TranscriptSegment]
    model: str
    usage: Usage
    duration: float
    language_probability: float | None = None

    @property
    def text(self) -> str:
        """The whole transcript as one string, segments joined by single spaces."""
        return " ".join(segment.text.strip() for segment in self.segments if segment.text.strip())

    def to_dict(self, include_words: bool = True) -> dict[str, Any]:
        """Return ``{language, language_probability?, duration, model, segments: [{start, end, text, words?}]}``
        (times in seconds)."""
        segments: list[dict[str, Any]] = []
        for segment in self.segments:
            item: dict[str, Any] = {
                "start": round(segment.start, 3),
                "end": round(segment.end, 3),
                "text": segment.text.strip(),
            }
            if include_words and segment.words:
                item["words"] = [
                    {"start": round(w.start, 3), "end": round(w.end, 3), "text": w.text.strip()}
                    | ({"probability": round(w.probability, 4)} if w.probability is not None else {})
                    for w in segment.words
                ]
            segments.append(item)
        return {
            "language": self.language,
            **(
                {"language_probability": round(self.language_probability, 4)}
                if self.language_probability is not None
                else {}
            ),
            "duration": round(self.duration, 3),
            "model": self.model,
            "segments": segments,
        }


#: How the offline analyzer's captions start: they describe measured facts (colours, text, faces),
#: not what a vision-language model saw. Answers drop this prefix (it is not about the video).
MEASURED_CAPTION_PREFIX = "Description from measured facts (not a learned caption): "


@dataclass
class FrameAnalysis:
    """What was found in one keyframe.

    ``caption`` is a learned caption when the provider has a vision-language model and a
    plain description built from measured facts otherwise (the offline provider says so in
    the text). ``facts`` holds measurements such as brightness or dominant colours.
    """

    caption: str | None
    labels: list[str]
    ocr_text: str
    model: str
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class FrameAnalysisBatch:
    """Analyses for a batch of images, in the order the images were given."""

    analyses: list[FrameAnalysis]
    model: str
    usage: Usage


@dataclass
class EmbeddingBatch:
    """Embeddings for a batch of texts: ``vectors`` is ``(n, dimension)`` float32, rows L2-normalised."""

    vectors: np.ndarray
    model: str
    dimension: int
    usage: Usage


@runtime_checkable
class Transcriber(Protocol):
    """Turns speech in an audio file into timed text."""

    model_name: str

    def transcribe(self, wav_path: str | Path, language: str | None = None) -> Transcript:
        """Transcribe ``wav_path``; ``language`` is an ISO 639-1 hint (``None`` = detect)."""
        ...


@runtime_checkable
class FrameAnalyzer(Protocol):
    """Describes keyframes: caption and/or labels, visible text, simple facts."""

    model_name: str

    def analyze(self, images: Sequence[bytes]) -> FrameAnalysisBatch:
        """Analyse JPEG-encoded ``images``; returns one analysis per image, same order."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to fixed-size, L2-normalised float32 vectors."""

    model_name: str

    @property
    def dimension(self) -> int:
        """Size of every vector this embedder returns."""
        ...

    def embed(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Embed ``texts``; returns one row per text, same order."""
        ...

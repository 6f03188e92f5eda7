"""Stage 3, ``transcript``: speech as timed segments, with word times when the model gives them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from videoqa_pipeline.ai import Transcriber, Transcript
from videoqa_pipeline.steps.errors import single_row
from videoqa_pipeline.steps.memory import measured, release_model
from videoqa_pipeline.steps.options import ProcessingOptions
from videoqa_pipeline.steps.previews import transcript_preview, usage_facts
from videoqa_pipeline.steps.result import Fact, Markdown, StageResult
from videoqa_pipeline.storage.blobs import BlobStore


def transcript_rows(transcript: Transcript) -> list[dict[str, Any]]:
    """One ``videoqa_transcript_segments`` row per segment, in time order."""
    return [
        {
            "segment_index": index,
            "start_seconds": segment.start,
            "end_seconds": segment.end,
            "text": segment.text.strip(),
            "words": [
                {"start": w.start, "end": w.end, "text": w.text, "probability": w.probability}
                for w in segment.words
            ]
            or None,
            "language": transcript.language,
            "model": transcript.model,
        }
        for index, segment in enumerate(transcript.segments)
    ]


@measured
def transcribe_audio(
    normalized_video: pd.DataFrame,
    video_id: str,
    store: BlobStore,
    transcriber: Callable[[], Transcriber],
    options: ProcessingOptions,
    *,
    audio_problem: str | None = None,
) -> StageResult:
    """Transcribe the normalized WAV; an empty transcript when disabled or the video is silent.

    Args:
        normalized_video: The video's ``normalized_video`` table (one row).
        transcriber: Gives the transcriber; called only when there is speech to transcribe,
            so a disabled stage never loads a model.
        audio_problem: What the normalize stage reported about the audio (its warning), if
            anything: the reason given when there is no WAV because no audio decoded.

    Raises:
        StageInputError: ``normalized_video`` has no row for the video.
        AIProviderError: the model could not load or the API call failed.
    """
    normalized = single_row(normalized_video, "normalized_video", video_id)
    audio_key = normalized["audio_blob_key"]
    if not options.enable_transcription or audio_key is None or pd.isna(audio_key):
        reason = (
            "transcription disabled"
            if not options.enable_transcription
            else audio_problem or "video has no audio"
        )
        return StageResult("transcript", [], {"skipped": reason, "segments": 0})
    started = time.perf_counter()
    provider = transcriber()
    try:
        with store.local_path(str(audio_key)) as wav:
            result = provider.transcribe(wav, language=options.language)
    finally:
        release_model(provider)  # no later stage of the run needs it
    seconds = time.perf_counter() - started
    rows = transcript_rows(result)
    facts: dict[str, Fact] = {
        "model": result.model,
        "language": result.language or "unknown",
        # How sure the detection was; None when the run config gave the language.
        "language_probability": (
            float(round(result.language_probability, 3)) if result.language_probability is not None else None
        ),
        "segments": len(rows),
        "words": sum(len(segment.text.split()) for segment in result.segments),
        "transcribe_seconds": float(round(seconds, 2)),
        "real_time_factor": float(round(seconds / result.duration, 3) if result.duration else 0.0),
        "preview": Markdown(transcript_preview(result.segments)),
        **usage_facts(result.usage),
    }
    return StageResult("transcript", rows, facts)

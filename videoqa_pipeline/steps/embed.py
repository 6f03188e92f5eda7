"""Stage 7, ``embeddings``: vectors for transcript chunks (aligned to scenes) and keyframe texts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from videoqa_pipeline.ai import Embedder, EmbeddingBatch
from videoqa_pipeline.steps.indexing import IndexItem, TimedText, frame_text, transcript_chunks
from videoqa_pipeline.steps.memory import measured, release_model
from videoqa_pipeline.steps.options import ProcessingOptions
from videoqa_pipeline.steps.previews import usage_facts
from videoqa_pipeline.steps.result import Fact, StageResult


def index_items(
    transcript: pd.DataFrame, scenes: pd.DataFrame, frame_analyses: pd.DataFrame
) -> list[IndexItem]:
    """The texts to embed: transcript chunks along scene boundaries, then one text per analysed
    keyframe that saw something, spanning its scene."""
    segments = [
        TimedText(float(row.start_seconds), float(row.end_seconds), str(row.text))
        for row in transcript.sort_values("segment_index").itertuples()
    ]
    bounds = [
        (float(row.start_seconds), float(row.end_seconds))
        for row in scenes.sort_values("scene_index").itertuples()
    ]
    items = transcript_chunks(segments, bounds)
    for row in frame_analyses.sort_values("scene_index").itertuples():
        labels = list(row.labels) if row.labels is not None else []
        text = frame_text(row.caption, labels, str(row.ocr_text or ""))
        if text:
            scene = int(row.scene_index)
            start, end = (
                bounds[scene] if 0 <= scene < len(bounds) else (row.timestamp_seconds, row.timestamp_seconds)
            )
            items.append(IndexItem("frame", float(start), float(end), text))
    return items


def embedding_rows(items: Sequence[IndexItem], batch: EmbeddingBatch) -> list[dict[str, Any]]:
    """One ``videoqa_embeddings`` row per item, with its vector."""
    return [
        {
            "item_index": index,
            "kind": item.kind,
            "start_seconds": item.start,
            "end_seconds": item.end,
            "text": item.text,
            "model": batch.model,
            "dimension": batch.dimension,
            "embedding": vector,
        }
        for index, (item, vector) in enumerate(zip(items, batch.vectors, strict=True))
    ]


@measured
def embed_video(
    transcript: pd.DataFrame,
    scenes: pd.DataFrame,
    frame_analyses: pd.DataFrame,
    embedder: Callable[[], Embedder],
    options: ProcessingOptions,
) -> StageResult:
    """Embed what search and ask read; empty when disabled or there is nothing to embed.

    Args:
        transcript: The video's ``transcript`` table.
        scenes: The video's ``scenes`` table.
        frame_analyses: The video's ``frame_analyses`` table.
        embedder: Gives the embedder; called only when there are texts to embed.

    Raises:
        AIProviderError: the model could not load or the API call failed.
    """
    if not options.enable_embeddings:
        return StageResult("embeddings", [], {"skipped": "embeddings disabled", "items": 0})
    items = index_items(transcript, scenes, frame_analyses)
    if not items:
        return StageResult("embeddings", [], {"skipped": "nothing to embed", "items": 0})
    started = time.perf_counter()
    provider = embedder()
    try:
        batch = provider.embed([item.text for item in items])
    finally:
        release_model(provider)
    seconds = time.perf_counter() - started
    rows = embedding_rows(items, batch)
    facts: dict[str, Fact] = {
        "model": batch.model,
        "dimension": batch.dimension,
        "items": len(rows),
        "transcript_chunks": sum(1 for item in items if item.kind == "transcript"),
        "frame_texts": sum(1 for item in items if item.kind == "frame"),
        "embed_seconds": float(round(seconds, 3)),
        **usage_facts(batch.usage),
    }
    return StageResult("embeddings", rows, facts)

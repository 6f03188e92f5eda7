"""A small corpus of stored moments with distinct facts, written as the pipeline writes them.

Three videos of three 5-second scenes; each scene has a transcript chunk, and some a frame text
(on-screen words), embedded with the real offline model. Rows go through the storage layer's own
writers (``replace_partition`` for PostgreSQL, ``write_partition`` for Parquet), so search reads
exactly the tables the ``embeddings``, ``keyframes`` and ``normalized_video`` assets produce.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from videoqa_pipeline.ai.types import Embedder
from videoqa_pipeline.storage.schema import EMBEDDINGS, KEYFRAMES, NORMALIZED_VIDEO, TableSpec

SCENE_SECONDS = 5.0

#: video suffix -> per scene: (spoken text, on-screen text or None)
FACTS: dict[str, list[tuple[str, str | None]]] = {
    "harbor": [
        ("The harbor ferry leaves every forty minutes from pier seven.", "FERRY TIMETABLE PIER 7"),
        ("Fishing boats return at dawn with sardines and mackerel.", None),
        ("The lighthouse was painted red and white in 1921.", None),
    ],
    "kitchen": [
        ("Preheat the oven to two hundred degrees before baking the bread.", None),
        ("Knead the dough for ten minutes until it feels elastic.", "SOURDOUGH RECIPE"),
        ("Let the loaf cool on a wire rack for an hour.", None),
    ],
    "space": [
        ("The rover landed in Jezero crater in February 2021.", None),
        ("Its drill collected rock samples for a future return mission.", "INVOICE 4471 TOTAL 42"),
        ("Solar panels were replaced by a nuclear power source.", None),
    ],
}


@dataclass(frozen=True)
class Corpus:
    """What was written: video IDs by short name (``harbor``, ``kitchen``, ``space``)."""

    video_ids: dict[str, str]

    def scene_start(self, scene: int) -> float:
        return scene * SCENE_SECONDS


def corpus_frames(
    video_id: str, facts: list[tuple[str, str | None]], embedder: Embedder
) -> dict[str, pd.DataFrame]:
    """The embeddings, keyframes and normalized-media rows of one video."""
    items: list[tuple[str, float, float, str]] = []
    for scene, (spoken, on_screen) in enumerate(facts):
        start, end = scene * SCENE_SECONDS, (scene + 1) * SCENE_SECONDS
        items.append(("transcript", start, end, spoken))
        if on_screen:
            items.append(("frame", start, end, f"Text on screen: {on_screen}"))
    batch = embedder.embed([text for *_, text in items])
    embeddings = pd.DataFrame(
        [
            {
                "item_index": index,
                "kind": kind,
                "start_seconds": start,
                "end_seconds": end,
                "text": text,
                "model": batch.model,
                "dimension": batch.dimension,
                "embedding": vector,
            }
            for index, ((kind, start, end, text), vector) in enumerate(zip(items, batch.vectors, strict=True))
        ]
    )
    keyframes = pd.DataFrame(
        [
            {
                "scene_index": scene,
                "timestamp_seconds": scene * SCENE_SECONDS + 2.0,
                "blob_key": f"{video_id}/keyframes/scene-{scene:04d}.jpg",
                "width": 64,
                "height": 36,
                "size_bytes": 1000,
                "sharpness": None,
            }
            for scene in range(len(facts))
        ]
    )
    normalized = pd.DataFrame(
        [
            {
                "video_blob_key": f"{video_id}/normalized/video.mp4",
                "audio_blob_key": None,
                "width": 64,
                "height": 36,
                "fps": 25.0,
                "duration_seconds": len(facts) * SCENE_SECONDS,
                "video_size_bytes": 1000,
                "audio_size_bytes": None,
            }
        ]
    )
    return {EMBEDDINGS.name: embeddings, KEYFRAMES.name: keyframes, NORMALIZED_VIDEO.name: normalized}


def write_corpus(
    write: Callable[[TableSpec, str, pd.DataFrame], object], embedder: Embedder, prefix: str
) -> Corpus:
    """Write every video of :data:`FACTS` with ``write(spec, video_id, frame)``."""
    video_ids: dict[str, str] = {}
    for name, facts in FACTS.items():
        video_id = f"{prefix}{name}"
        frames = corpus_frames(video_id, facts, embedder)
        for spec in (EMBEDDINGS, KEYFRAMES, NORMALIZED_VIDEO):
            write(spec, video_id, frames[spec.name])
        video_ids[name] = video_id
    return Corpus(video_ids)

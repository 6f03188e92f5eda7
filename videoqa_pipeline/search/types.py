"""Value types of search: filters, ranked hits from one retriever, and moments shown to users."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from videoqa_pipeline.storage.errors import StorageError


class SearchError(StorageError):
    """Search cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class SearchFilters:
    """Which stored items a search may return.

    Attributes:
        video_ids: Only these videos (empty = all).
        start_seconds: Only items ending after this time.
        end_seconds: Only items starting before this time.
    """

    video_ids: tuple[str, ...] = ()
    start_seconds: float | None = None
    end_seconds: float | None = None

    def __post_init__(self) -> None:
        if (
            self.start_seconds is not None
            and self.end_seconds is not None
            and self.end_seconds < self.start_seconds
        ):
            raise SearchError(
                f"time range {self.start_seconds:g}-{self.end_seconds:g} s ends before it starts; "
                "swap the bounds"
            )


@dataclass
class Hit:
    """One stored embedding item found by a retriever.

    Attributes:
        video_id: Video of the item.
        item_index: Row of the item in ``videoqa_embeddings``.
        kind: ``"transcript"`` or ``"frame"``.
        start: Start of the item, seconds.
        end: End of the item, seconds.
        text: The embedded text.
        similarity: Cosine similarity to the query (filled for vector hits, and for text hits when
            the vector is known).
        vector_rank: 1-based rank among vector hits (None when not found by vectors).
        text_rank: 1-based rank among full-text hits (None when not found by text).
        score: Reciprocal-rank-fusion score.
    """

    video_id: str
    item_index: int
    kind: str
    start: float
    end: float
    text: str
    similarity: float | None = None
    vector_rank: int | None = None
    text_rank: int | None = None
    score: float = 0.0

    @property
    def key(self) -> tuple[str, int]:
        """Identity of the stored item."""
        return (self.video_id, self.item_index)


@dataclass
class Moment:
    """A stretch of one video that answers a query: what users see and answers cite.

    Attributes:
        video_id: The video.
        start: Start, seconds.
        end: End, seconds.
        text: Transcript text of the moment ("" when nothing was said).
        frame_text: Caption / labels / on-screen text of its keyframe ("" when none).
        keyframe: Blob key of the keyframe nearest the moment (None when the video has none).
        score: Fused score (reciprocal rank fusion of its items' ranks); higher is better. It only
            orders the results of one search: its size means nothing to a person (see
            :attr:`relevance`).
        similarity: Best cosine similarity of its items to the query (None if unknown).
        hits: The items grouped into this moment.
    """

    video_id: str
    start: float
    end: float
    text: str
    frame_text: str
    keyframe: str | None
    score: float
    similarity: float | None
    hits: list[Hit] = field(default_factory=list)

    @property
    def relevance(self) -> float | None:
        """How well the moment matches the query, 0-1, the same scale in every search mode.

        The cosine similarity of its closest item to the query, clipped to 0-1 (vector and
        full-text hits both carry it). With the offline model unrelated text scores about
        0.0-0.2 and a paraphrase of what was said 0.4 and more; ``ask`` treats a moment under
        0.3 as not relevant. None when the moment's items were embedded by another model.
        """
        if self.similarity is None:
            return None
        return min(1.0, max(0.0, float(self.similarity)))

    @property
    def timestamp(self) -> str:
        """``mm:ss`` (``hh:mm:ss`` past an hour) of :attr:`start`, as answers cite it."""
        return format_timestamp(self.start)

    @property
    def citation(self) -> str:
        """``[video_id @ mm:ss]``."""
        return f"[{self.video_id} @ {self.timestamp}]"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times in seconds)."""
        return {
            "video_id": self.video_id,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "timestamp": self.timestamp,
            "text": self.text,
            "frame_text": self.frame_text,
            "keyframe": self.keyframe,
            "score": round(self.score, 6),
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "relevance": None if self.relevance is None else round(self.relevance, 3),
        }


def format_timestamp(seconds: float) -> str:
    """``mm:ss`` for times under an hour, else ``hh:mm:ss``; fractions are dropped."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_relevance(relevance: float | None) -> str:
    """``62%`` for display; ``n/a`` when unknown."""
    return "n/a" if relevance is None else f"{round(100 * relevance)}%"

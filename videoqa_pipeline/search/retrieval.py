"""Hybrid retrieval: vector and full-text candidates fused by reciprocal rank, grouped into moments.

Why reciprocal rank fusion (RRF): cosine similarities and ``ts_rank`` scores live on unrelated
scales, but ranks do not. Each item gets ``sum(1 / (rrf_k + rank))`` over the retrievers that found
it (``rrf_k = 60``, the constant of Cormack et al. 2009), so an item both retrievers agree on beats
one only a single retriever likes, and neither scale needs tuning.

Items are then grouped into **moments**: items of the same video whose time spans overlap (a
scene's transcript chunk and its keyframe's text share the scene's bounds) become one moment whose
is ranked by fusing its best rank in each retriever. Each moment gets the keyframe nearest to it.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass, field
from typing import Literal

from videoqa_pipeline.ai.types import Embedder
from videoqa_pipeline.search.backends import SearchBackend
from videoqa_pipeline.search.types import Hit, Moment, SearchError, SearchFilters

logger = logging.getLogger(__name__)

SearchMode = Literal["hybrid", "vector", "text"]
SEARCH_MODES: tuple[str, ...] = ("hybrid", "vector", "text")

#: Constant of reciprocal rank fusion.
RRF_K = 60
#: Weight of the full-text ranking relative to the vector ranking in the fusion.
TEXT_WEIGHT = 1.0
#: Largest number of moments one search returns.
MAX_RESULTS = 100


@dataclass
class SearchResult:
    """Moments for a query, best first, plus what it took to find them.

    Attributes:
        query: The query as given.
        mode: ``hybrid``, ``vector`` or ``text``.
        moments: Best first.
        vector_candidates: Items found by vector similarity.
        text_candidates: Items found by full-text search.
        seconds: Wall time of the search (embedding the query included).
    """

    query: str
    mode: str
    moments: list[Moment] = field(default_factory=list)
    vector_candidates: int = 0
    text_candidates: int = 0
    seconds: float = 0.0


def fuse(rankings: list[list[Hit]], rrf_k: int = RRF_K) -> list[Hit]:
    """Merge ranked hit lists by reciprocal rank fusion.

    Args:
        rankings: One list per retriever, best first. Hits of the same stored item are merged
            (ranks and similarity kept).
        rrf_k: The fusion constant; larger flattens the advantage of top ranks.

    Returns:
        Distinct hits with :attr:`Hit.score` set, best first (ties by video and item).
    """
    merged: dict[tuple[str, int], Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            existing = merged.get(hit.key)
            if existing is None:
                existing = Hit(hit.video_id, hit.item_index, hit.kind, hit.start, hit.end, hit.text)
                merged[hit.key] = existing
            existing.score += 1.0 / (rrf_k + rank)
            if hit.similarity is not None and (
                existing.similarity is None or hit.similarity > existing.similarity
            ):
                existing.similarity = hit.similarity
            if hit.vector_rank is not None:
                existing.vector_rank = hit.vector_rank
            if hit.text_rank is not None:
                existing.text_rank = hit.text_rank
    return sorted(merged.values(), key=lambda hit: (-hit.score, hit.video_id, hit.item_index))


def group_into_moments(hits: list[Hit], limit: int, rrf_k: int = RRF_K) -> list[Moment]:
    """Group fused hits (best first) into the ``limit`` best moments of overlapping time spans.

    A hit joins the first moment of its video whose span overlaps its own, else starts a new one.
    A moment is then scored by reciprocal rank fusion of its *best* rank in each retriever, not by
    the sum of its items' scores: a scene with both a transcript chunk and on-screen text would
    otherwise beat an equally relevant scene with speech only just for having two items. Moment
    text is its transcript items' text in time order; frame text that of its best frame item.
    """
    groups: list[list[Hit]] = []
    bounds: list[tuple[str, float, float]] = []  # (video, start, end) of each group, kept current
    for hit in hits:
        home = None
        for position, (video_id, start, end) in enumerate(bounds):
            if video_id == hit.video_id and (
                (hit.start < end and start < hit.end) or (hit.start == start and hit.end == end)
            ):
                home = position
                break
        if home is not None:
            groups[home].append(hit)
            _, start, end = bounds[home]
            bounds[home] = (hit.video_id, min(start, hit.start), max(end, hit.end))
        else:
            groups.append([hit])
            bounds.append((hit.video_id, hit.start, hit.end))
    moments: list[Moment] = []
    for group in groups:
        transcript = sorted((h for h in group if h.kind == "transcript"), key=lambda h: h.start)
        frames = [h for h in group if h.kind == "frame"]
        similarities = [h.similarity for h in group if h.similarity is not None]
        vector_ranks = [h.vector_rank for h in group if h.vector_rank is not None]
        text_ranks = [h.text_rank for h in group if h.text_rank is not None]
        if vector_ranks or text_ranks:
            score = (1.0 / (rrf_k + min(vector_ranks)) if vector_ranks else 0.0) + (
                TEXT_WEIGHT / (rrf_k + min(text_ranks)) if text_ranks else 0.0
            )
        else:  # hits fused without retriever ranks: keep their own scores
            score = max(h.score for h in group)
        moments.append(
            Moment(
                video_id=group[0].video_id,
                start=min(h.start for h in group),
                end=max(h.end for h in group),
                text=" ".join(h.text.strip() for h in transcript),
                frame_text=frames[0].text.strip() if frames else "",
                keyframe=None,
                score=score,
                similarity=max(similarities) if similarities else None,
                hits=group,
            )
        )
    moments.sort(
        key=lambda moment: (-moment.score, -(moment.similarity or 0.0), moment.video_id, moment.start)
    )
    return moments[:limit]


def nearest_keyframe(keyframes: list[tuple[float, str]], start: float, end: float) -> str | None:
    """Blob key of the keyframe inside ``[start, end]`` closest to its middle, else the closest one."""
    if not keyframes:
        return None
    times = [timestamp for timestamp, _ in keyframes]
    middle = (start + end) / 2
    inside = [(abs(t - middle), key) for t, key in keyframes if start <= t <= end]
    if inside:
        return min(inside)[1]
    position = bisect.bisect_left(times, middle)
    neighbours = [keyframes[i] for i in (position - 1, position) if 0 <= i < len(keyframes)]
    return min(neighbours, key=lambda entry: abs(entry[0] - middle))[1]


class Searcher:
    """Finds moments for a query in whatever the pipeline stored.

    Build one per process and reuse it: the embedder is loaded once and the backend keeps the
    database pool.
    """

    def __init__(self, backend: SearchBackend, embedder: Embedder, *, candidates: int = 50) -> None:
        """Args:
        backend: Where stored embeddings are read.
        embedder: The same kind of embedder the pipeline used (model names must match).
        candidates: Items fetched from each retriever before fusion.
        """
        self.backend = backend
        self.embedder = embedder
        self.candidates = candidates

    def check_models(self, filters: SearchFilters) -> None:
        """Refuse to search when the videos in scope hold vectors of another embedding model.

        Vectors of two models (or of one model at two precisions, recorded as e.g.
        ``all-MiniLM-L6-v2`` and ``all-MiniLM-L6-v2@int8``) live in different spaces: comparing
        them would rank by noise, and leaving the other model's videos out would hide them without
        a word. The error names the models, the videos, and the two ways out.

        Raises:
            SearchError: some videos in scope were embedded by a model other than this searcher's.
        """
        ours = self.embedder.model_name
        stored = self.backend.embedding_models(filters)
        if not stored - {ours}:
            return
        videos = self.backend.videos_by_model(filters)
        others = sorted(model for model in videos if model != ours)
        described = "; ".join(f"{model}: {_some(videos[model])}" for model in others)
        first_other = others[0] if others else sorted(stored - {ours})[0]
        raise SearchError(
            f"the stored vectors were made by another embedding model than this search uses ({ours}): "
            f"{described}. Vectors of different models cannot be compared. Re-embed those videos with "
            f"`videoqa reprocess VIDEO --from embeddings` (transcripts and frame analyses are kept), or search "
            f"with the model that made them (VIDEOQA_EMBED_MODEL={first_other}); `--mode text` works meanwhile"
        )

    def search(
        self,
        query: str,
        *,
        k: int = 5,
        filters: SearchFilters | None = None,
        mode: SearchMode = "hybrid",
    ) -> SearchResult:
        """Find the ``k`` best moments for ``query``.

        Args:
            query: Free text (a question or keywords).
            k: Moments to return (1-100).
            filters: Videos and time range to search in (default: everything).
            mode: ``hybrid`` (default), or ``vector`` / ``text`` alone (for evaluation).

        Returns:
            The moments, best first, with keyframes attached.

        Raises:
            SearchError: empty query, ``k`` out of range, unknown mode, or (``hybrid`` and
                ``vector``) stored vectors of another embedding model (see :meth:`check_models`).
            DatabaseUnavailableError: the metadata database cannot be reached.
            AIProviderError: the query could not be embedded.
        """
        started = time.perf_counter()
        query = query.strip()
        if not query:
            raise SearchError("the search query is empty: type some words or a question")
        if not 1 <= k <= MAX_RESULTS:
            raise SearchError(f"k={k} is out of range: ask for 1 to {MAX_RESULTS} results")
        if mode not in SEARCH_MODES:
            raise SearchError(f"unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")
        filters = filters or SearchFilters()
        limit = max(self.candidates, k * 4)
        if mode != "text":
            self.check_models(filters)
        vector = self.embedder.embed([query]).vectors[0]
        vector_hits: list[Hit] = []
        text_hits: list[Hit] = []
        if mode in ("hybrid", "vector"):
            vector_hits = self.backend.vector_hits(vector, self.embedder.model_name, filters, limit)
            for rank, hit in enumerate(vector_hits, start=1):
                hit.vector_rank = rank
        if mode in ("hybrid", "text"):
            text_hits = self.backend.text_hits(query, filters, limit, vector, self.embedder.model_name)
            for rank, hit in enumerate(text_hits, start=1):
                hit.text_rank = rank
        moments = group_into_moments(fuse([vector_hits, text_hits]), k)
        keyframes = self.backend.keyframes(sorted({moment.video_id for moment in moments}))
        for moment in moments:
            moment.keyframe = nearest_keyframe(keyframes.get(moment.video_id, []), moment.start, moment.end)
        seconds = time.perf_counter() - started
        logger.debug(
            "search %r (%s): %d vector + %d text candidates -> %d moments in %.1f ms",
            query,
            mode,
            len(vector_hits),
            len(text_hits),
            len(moments),
            seconds * 1000,
        )
        return SearchResult(query, mode, moments, len(vector_hits), len(text_hits), seconds)


def _some(video_ids: list[str], shown: int = 5) -> str:
    """``a, b, c and 7 more videos`` for an error message."""
    listed = ", ".join(video_ids[:shown])
    more = len(video_ids) - shown
    return f"{listed} and {more} more videos" if more > 0 else f"{len(video_ids)} video(s): {listed}"

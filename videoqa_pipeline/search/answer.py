"""Answer questions from retrieved moments, citing them as ``[video_id @ mm:ss]``.

Two answerers share one contract (:class:`Answer` with structured citations):

* :class:`ExtractiveAnswerer` (offline): the sentences of the retrieved moments closest to the
  question (cosine of their embeddings), grouped by moment, each moment cited once after its
  sentences. A keyframe contributes what is on screen and a learned caption; the offline
  analyzer's measured-facts description only when nothing is written on screen, and never its
  boilerplate prefix or the keyword labels (they are there for search, not to be read).
* :class:`OpenAIAnswerer`: a chat completion (OpenAI or a compatible server: ``VIDEOQA_ASK_BASE_URL``
  / ``VIDEOQA_ASK_MODEL``) told to answer only from the numbered moments and to cite them.
  Citations are parsed back from its text and checked against the moments it was given: a label
  naming a time inside a moment is rewritten to that moment's label, one naming no given moment
  is removed from the text and listed in :attr:`Answer.dropped_citations`.

Both say :data:`NOT_FOUND` without guessing when retrieval found nothing relevant enough: no
moment whose best cosine similarity reaches ``min_similarity``. The model is never called then.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from videoqa_pipeline.ai.config import DEFAULT_OPENAI_MODELS, AIConfig
from videoqa_pipeline.ai.types import MEASURED_CAPTION_PREFIX, Embedder
from videoqa_pipeline.search.retrieval import Searcher
from videoqa_pipeline.search.types import Moment, SearchFilters, format_timestamp

logger = logging.getLogger(__name__)

NOT_FOUND = "not found in the videos"

#: Below this cosine similarity a moment is not considered relevant to the question. Unrelated
#: texts score about 0.0-0.2 with all-MiniLM-L6-v2; paraphrases of a stated fact 0.4 and more.
DEFAULT_MIN_SIMILARITY = 0.3

#: Default chat model for answers with OpenAI (``VIDEOQA_ASK_MODEL``, or the older
#: ``VIDEOQA_CHAT_MODEL``, overrides it).
DEFAULT_CHAT_MODEL = DEFAULT_OPENAI_MODELS["ask"]

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
# The parts of a keyframe's indexed text (videoqa_pipeline.steps.indexing.frame_text):
# "<caption>. Labels: a, b. Text on screen: <words>".
_ON_SCREEN = re.compile(r"(?:^|\s)Text on screen: (.*)$", re.S)
_LABELS = re.compile(r"(?:^|\s)Labels: [^.]*\.")
_CITATION = re.compile(r"\[([^\[\]@]+?)\s*@\s*(\d+(?::\d{2}){1,2})\]")
# Where a dropped label was, no double space and no space before punctuation.
_SPACES = re.compile(r"[ \t]{2,}")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t]+(?=[.,;:!?])")


@dataclass
class Citation:
    """One moment an answer relies on.

    Attributes:
        video_id: The video.
        start: Start of the moment, seconds.
        end: End of the moment, seconds.
        timestamp: ``mm:ss`` of ``start``.
        text: The quoted sentence (extractive) or the moment's text (chat).
        keyframe: Blob key of the moment's keyframe, if any.
        relevance: The moment's relevance to the question, 0-1 (see :attr:`Moment.relevance`).
    """

    video_id: str
    start: float
    end: float
    timestamp: str
    text: str
    keyframe: str | None = None
    relevance: float | None = None

    @property
    def label(self) -> str:
        """``[video_id @ mm:ss]``."""
        return f"[{self.video_id} @ {self.timestamp}]"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "video_id": self.video_id,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "timestamp": self.timestamp,
            "label": self.label,
            "text": self.text,
            "keyframe": self.keyframe,
            "relevance": None if self.relevance is None else round(self.relevance, 3),
        }


@dataclass
class Answer:
    """An answer and the moments it cites.

    Attributes:
        question: The question as asked.
        answer: The answer text, with inline ``[video_id @ mm:ss]`` citations, or :data:`NOT_FOUND`.
        found: False when the videos hold nothing relevant.
        citations: Cited moments, in order of first citation.
        method: ``extractive`` or ``openai:<model>``.
        moments: The retrieved moments given to the answerer.
        dropped_citations: Labels the chat model wrote that name no moment it was given (removed
            from :attr:`answer`; a model inventing sources is worth knowing about).
    """

    @property
    def uncited(self) -> bool:
        """An answer that cites none of the moments: a reader cannot check it against the videos
        (small chat models often leave the labels out), so it is marked, never passed off as grounded."""
        return self.found and not self.citations

    question: str
    answer: str
    found: bool
    citations: list[Citation] = field(default_factory=list)
    method: str = "extractive"
    moments: list[Moment] = field(default_factory=list)
    dropped_citations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "question": self.question,
            "answer": self.answer,
            "found": self.found,
            "method": self.method,
            "citations": [citation.to_dict() for citation in self.citations],
            "dropped_citations": list(self.dropped_citations),
            "uncited": self.uncited,
            "moments": [moment.to_dict() for moment in self.moments],
        }


def _citation_for(moment: Moment, text: str) -> Citation:
    return Citation(
        moment.video_id, moment.start, moment.end, moment.timestamp, text, moment.keyframe, moment.relevance
    )


def relevant_moments(moments: list[Moment], min_similarity: float) -> list[Moment]:
    """Moments whose best similarity to the question reaches ``min_similarity``."""
    return [m for m in moments if m.similarity is not None and m.similarity >= min_similarity]


class Answerer(Protocol):
    """Writes an answer from relevant moments."""

    def answer(self, question: str, moments: list[Moment]) -> Answer:
        """Answer ``question`` from ``moments`` (non-empty, best first)."""
        ...


def frame_sentences(frame_text: str) -> list[str]:
    """What a keyframe's indexed text says, as sentences fit for an answer.

    On-screen words become ``The screen shows "..."``; a learned caption is kept; the offline
    measured-facts description loses its prefix and is kept only when nothing is on screen (it
    then repeats the on-screen words); keyword labels are dropped.
    """
    text, on_screen = frame_text.strip(), ""
    found = _ON_SCREEN.search(text)
    if found:
        on_screen, text = " ".join(found.group(1).split()), text[: found.start()]
    caption = _LABELS.sub(" ", text).strip()
    if caption.startswith(MEASURED_CAPTION_PREFIX.strip()):
        caption = "" if on_screen else caption[len(MEASURED_CAPTION_PREFIX.strip()) :].strip()
    sentences = [caption[:1].upper() + caption[1:]] if len(caption) >= 3 else []
    if on_screen:
        sentences.append(f'The screen shows "{on_screen}".')
    return sentences


class ExtractiveAnswerer:
    """Offline answers: the question's closest sentences from the moments, with citations."""

    def __init__(
        self,
        embedder: Embedder,
        max_sentences: int = 3,
        min_similarity: float = 0.2,
        max_gap: float = 0.25,
    ) -> None:
        """Args:
        embedder: Embeds the question and candidate sentences (the search embedder).
        max_sentences: Most sentences in an answer.
        min_similarity: Sentences below this cosine are left out (the best one is always kept).
        max_gap: Sentences more than this below the best one's cosine are left out too: on the
            sample video another slide's text passed ``min_similarity`` at 0.24 where the best
            sentence scored 0.61-0.66, while on-screen words that confirm the spoken answer
            scored 0.57 against 0.77 (kept).
        """
        self.embedder = embedder
        self.max_sentences = max_sentences
        self.min_similarity = min_similarity
        self.max_gap = max_gap

    def answer(self, question: str, moments: list[Moment]) -> Answer:
        """Pick the best sentences; see the module docstring."""
        candidates: list[tuple[str, Moment]] = []
        seen: set[str] = set()
        for moment in moments:
            spoken = [sentence.strip() for sentence in _SENTENCE_SPLIT.split(moment.text.strip())]
            for sentence in [*spoken, *frame_sentences(moment.frame_text)]:
                if len(sentence) >= 3 and sentence.lower() not in seen:
                    seen.add(sentence.lower())
                    candidates.append((sentence, moment))
        if not candidates:
            return Answer(question, NOT_FOUND, False, moments=moments)
        vectors = self.embedder.embed([question] + [sentence for sentence, _ in candidates]).vectors
        similarities = np.asarray(vectors[1:], dtype=np.float32) @ np.asarray(vectors[0], dtype=np.float32)
        order = [int(i) for i in np.argsort(-similarities)]
        floor = max(self.min_similarity, float(similarities[order[0]]) - self.max_gap)
        chosen = [i for i in order[: self.max_sentences] if similarities[i] >= floor] or order[:1]
        # Sentences of one moment together, in its text's order, and moments in retrieval order:
        # the answer reads like the source and names each moment once.
        by_moment: dict[int, list[int]] = {}
        for i in sorted(chosen):
            by_moment.setdefault(moments.index(candidates[i][1]), []).append(i)
        parts: list[str] = []
        citations: list[Citation] = []
        for position in sorted(by_moment):
            moment = moments[position]
            quoted = " ".join(candidates[i][0].rstrip() for i in by_moment[position])
            parts.append(f"{quoted} {moment.citation}")
            citations.append(_citation_for(moment, quoted))
        return Answer(question, " ".join(parts), True, citations, "extractive", moments)


SYSTEM_PROMPT = (
    "You answer questions about a collection of videos using only the numbered moments given. "
    "Each moment has a citation label like [video_id @ mm:ss]. Cite every fact with the label of "
    "the moment it comes from, copied exactly. Be brief. If the moments do not contain the answer, "
    f'reply exactly "{NOT_FOUND}".'
)


class OpenAIAnswerer:
    """Answers with a chat completion that must cite the moments it uses."""

    def __init__(self, config: AIConfig, model: str | None = None) -> None:
        """Args:
        config: AI settings: the ask protocol's server (``VIDEOQA_ASK_BASE_URL``, else
            ``OPENAI_BASE_URL``, else OpenAI), key, retries and timeout.
        model: The chat model; default ``VIDEOQA_ASK_MODEL`` (or ``VIDEOQA_CHAT_MODEL``), else
            :data:`DEFAULT_CHAT_MODEL`.
        """
        self.config = config
        self.model = model or config.ask_model or DEFAULT_CHAT_MODEL

    def answer(self, question: str, moments: list[Moment]) -> Answer:
        """Ask the model; citations are the labels it used that name a given moment.

        The request is a plain, non-streaming completion at temperature 0 (every compatible
        server takes that); nothing here depends on streaming.

        Raises:
            AIProviderError: the API failed (message says whether to retry).
        """
        from videoqa_pipeline.ai.openai_client import Endpoint, call_api, make_client

        client = make_client(self.config, "ask")
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": build_prompt(question, moments)},
        ]
        response = call_api(
            f"answer a question with {self.model}",
            lambda: client.chat.completions.create(model=self.model, messages=messages, temperature=0),
            Endpoint.of(self.config, "ask"),
        )
        try:
            text = (response.choices[0].message.content or "").strip()
        except (AttributeError, IndexError, TypeError):
            text = ""
        method = f"openai:{self.model}"
        if not text or NOT_FOUND in text.lower():
            return Answer(question, NOT_FOUND, False, [], method, moments)
        checked, citations, dropped = check_citations(text, moments)
        if dropped:
            logger.warning("the chat model cited moments it was not given: %s", ", ".join(dropped))
        if not citations:
            logger.warning(
                "the chat model %s cited none of the %d moments it was given", self.model, len(moments)
            )
        return Answer(question, checked, True, citations, method, moments, dropped)


def build_prompt(question: str, moments: list[Moment]) -> str:
    """The user message: the numbered moments with their citation labels, then the question."""
    context = "\n\n".join(
        f"Moment {n} {moment.citation} ({format_timestamp(moment.start)}-{format_timestamp(moment.end)}):\n"
        f"Transcript: {moment.text or '(no speech)'}\nOn screen: {moment.frame_text or '(nothing)'}"
        for n, moment in enumerate(moments, start=1)
    )
    return f"Moments:\n\n{context}\n\nQuestion: {question}"


def timestamp_seconds(timestamp: str) -> int:
    """Seconds of ``mm:ss``, ``h:mm:ss`` or ``hh:mm:ss`` (as models write them)."""
    seconds = 0
    for part in timestamp.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def _moment_cited(video_id: str, seconds: int, moments: list[Moment]) -> Moment | None:
    """The moment a label names: the one starting at that second, else the one containing it."""
    same_video = [m for m in moments if m.video_id == video_id]
    exact = [m for m in same_video if int(m.start) == seconds]
    if exact:
        return exact[0]
    return next((m for m in same_video if int(m.start) <= seconds <= m.end), None)


def check_citations(text: str, moments: list[Moment]) -> tuple[str, list[Citation], list[str]]:
    """Check every ``[video_id @ time]`` label of ``text`` against the moments the model was given.

    Returns:
        ``(text, citations, dropped)``: the text with each label naming a given moment written as
        that moment's own label and every other label removed; the cited moments in order of
        first citation (each once); the removed labels.
    """
    citations: list[Citation] = []
    dropped: list[str] = []

    def replace(match: re.Match[str]) -> str:
        moment = _moment_cited(match.group(1).strip(), timestamp_seconds(match.group(2)), moments)
        if moment is None:
            dropped.append(match.group(0))
            return ""
        if all(c.label != moment.citation for c in citations):
            citations.append(_citation_for(moment, moment.text or moment.frame_text))
        return moment.citation

    checked = _CITATION.sub(replace, text)
    if dropped:  # close the gaps the removed labels left
        checked = _SPACE_BEFORE_PUNCTUATION.sub("", _SPACES.sub(" ", checked))
    return checked.strip(), citations, dropped


def parse_citations(text: str, moments: list[Moment]) -> list[Citation]:
    """Citations of ``text`` that name one of ``moments`` (by video and time), in order.

    Labels naming no given moment (a model's invention) are dropped.
    """
    return check_citations(text, moments)[1]


def ask(
    question: str,
    searcher: Searcher,
    answerer: Answerer,
    *,
    k: int = 5,
    filters: SearchFilters | None = None,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> Answer:
    """Retrieve moments for ``question``, then answer from the relevant ones.

    Args:
        question: The question.
        searcher: Hybrid retrieval over the stored embeddings.
        answerer: :class:`ExtractiveAnswerer` or :class:`OpenAIAnswerer`.
        k: Moments retrieved.
        filters: Videos / time range to search.
        min_similarity: Relevance threshold; below it for every moment, the answer is :data:`NOT_FOUND`.

    Returns:
        The answer with structured citations.

    Raises:
        SearchError: empty question or bad ``k``.
        AIProviderError: embedding or the chat call failed.
    """
    result = searcher.search(question, k=k, filters=filters)
    relevant = relevant_moments(result.moments, min_similarity)
    if not relevant:
        logger.info("ask %r: nothing above similarity %.2f", question, min_similarity)
        method = "openai:" + answerer.model if isinstance(answerer, OpenAIAnswerer) else "extractive"
        return Answer(question, NOT_FOUND, False, [], method, result.moments)
    return answerer.answer(question, relevant)

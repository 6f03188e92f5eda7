"""Answers with citations: extractive offline, chat through a local OpenAI-compatible server."""

from __future__ import annotations

import json
import time

import pytest

from videoqa_pipeline.ai import AIConfig
from videoqa_pipeline.search import (
    NOT_FOUND,
    ExtractiveAnswerer,
    OpenAIAnswerer,
    Searcher,
    SearchError,
    SearchFilters,
    answerer_for,
    ask,
    parse_citations,
)
from videoqa_pipeline_tests.ai.openai_test_server import OpenAITestServer, ScriptedReply
from videoqa_pipeline_tests.search.corpus import Corpus

UNRELATED = "Which football team won the championship final last season?"


def _chat_reply(content: str) -> ScriptedReply:
    payload = {
        "id": "chatcmpl-ask",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220},
    }
    return ScriptedReply(200, json.dumps(payload).encode())


def _filters(corpus: Corpus) -> SearchFilters:
    return SearchFilters(video_ids=tuple(corpus.video_ids.values()))


def test_extractive_answer_quotes_the_fact_and_cites_its_moment(searcher: Searcher, corpus: Corpus) -> None:
    harbor = corpus.video_ids["harbor"]
    answer = ask(
        "How frequently does the ferry sail?",
        searcher,
        ExtractiveAnswerer(searcher.embedder, max_sentences=1),
        filters=_filters(corpus),
    )
    assert answer.found and answer.method == "extractive"
    assert answer.answer == f"The harbor ferry leaves every forty minutes from pier seven. [{harbor} @ 00:00]"
    citation = answer.citations[0]
    assert (citation.video_id, citation.start, citation.end, citation.timestamp) == (
        harbor,
        0.0,
        5.0,
        "00:00",
    )
    assert citation.keyframe == f"{harbor}/keyframes/scene-0000.jpg"
    assert answer.to_dict()["citations"][0]["label"] == f"[{harbor} @ 00:00]"


def test_extractive_answer_cites_the_later_moment_with_its_timestamp(
    searcher: Searcher, corpus: Corpus
) -> None:
    answer = ask(
        "When was the lighthouse painted?",
        searcher,
        ExtractiveAnswerer(searcher.embedder),
        filters=_filters(corpus),
    )
    assert answer.found
    assert (
        f"The lighthouse was painted red and white in 1921. [{corpus.video_ids['harbor']} @ 00:10]"
        in answer.answer
    )
    assert answer.citations[0].start == 10.0


def test_unrelated_question_is_not_found_in_the_videos(searcher: Searcher, corpus: Corpus) -> None:
    answer = ask(UNRELATED, searcher, ExtractiveAnswerer(searcher.embedder), filters=_filters(corpus))
    assert not answer.found
    assert answer.answer == NOT_FOUND and answer.citations == []
    assert all((m.similarity or 0) < 0.3 for m in answer.moments), [
        (m.text, m.similarity) for m in answer.moments
    ]


def test_chat_answer_cites_moments_and_drops_invented_citations(searcher: Searcher, corpus: Corpus) -> None:
    space = corpus.video_ids["space"]
    with OpenAITestServer() as server:
        server.script(
            "/v1/chat/completions",
            _chat_reply(f"It landed in Jezero crater [{space} @ 00:00], not on the Moon [{space} @ 09:59]."),
        )
        config = AIConfig.from_env({"OPENAI_BASE_URL": server.base_url, "VIDEOQA_OPENAI_MAX_RETRIES": "0"})
        answer = ask(
            "Where did the Mars vehicle touch down?",
            searcher,
            OpenAIAnswerer(config),
            filters=_filters(corpus),
        )
        requests = server.requests_to("/v1/chat/completions")
    assert answer.found and answer.method == "openai:gpt-4o-mini"
    assert answer.answer.startswith("It landed in Jezero crater")
    assert [(c.video_id, c.start, c.timestamp) for c in answer.citations] == [(space, 0.0, "00:00")]
    assert answer.citations[0].text == "The rover landed in Jezero crater in February 2021."
    sent = requests[0].json or {}
    assert sent["model"] == "gpt-4o-mini"
    prompt = sent["messages"][1]["content"]
    assert f"[{space} @ 00:00]" in prompt and "The rover landed in Jezero crater" in prompt
    assert "Question: Where did the Mars vehicle touch down?" in prompt
    assert "not found in the videos" in sent["messages"][0]["content"]


def test_chat_is_not_called_when_nothing_relevant_was_retrieved(searcher: Searcher, corpus: Corpus) -> None:
    with OpenAITestServer() as server:
        config = AIConfig.from_env({"OPENAI_BASE_URL": server.base_url})
        answer = ask(UNRELATED, searcher, OpenAIAnswerer(config), filters=_filters(corpus))
        assert server.requests_to("/v1/chat/completions") == []
    assert not answer.found and answer.answer == NOT_FOUND


def test_chat_saying_not_found_gives_no_citations(searcher: Searcher, corpus: Corpus) -> None:
    with OpenAITestServer() as server:
        server.script("/v1/chat/completions", _chat_reply("Not found in the videos."))
        config = AIConfig.from_env({"OPENAI_BASE_URL": server.base_url})
        answer = ask(
            "When was the lighthouse painted?", searcher, OpenAIAnswerer(config), filters=_filters(corpus)
        )
    assert not answer.found and answer.answer == NOT_FOUND and answer.citations == []


def test_answerer_follows_the_settings(searcher: Searcher) -> None:
    assert isinstance(answerer_for(searcher, {}), ExtractiveAnswerer)
    chat = answerer_for(searcher, {"OPENAI_API_KEY": "sk-test-0000000000", "VIDEOQA_CHAT_MODEL": "gpt-x"})
    assert isinstance(chat, OpenAIAnswerer) and chat.model == "gpt-x"
    assert isinstance(
        answerer_for(searcher, {"OPENAI_API_KEY": "sk", "VIDEOQA_ASK_PROVIDER": "local"}), ExtractiveAnswerer
    )
    with pytest.raises(SearchError, match="VIDEOQA_ASK_PROVIDER"):
        answerer_for(searcher, {"VIDEOQA_ASK_PROVIDER": "oracle"})


def test_parse_citations_accepts_hour_timestamps() -> None:
    from videoqa_pipeline.search import Moment

    moment = Moment("talk-1", 3725.0, 3730.0, "Late fact.", "", None, 1.0, 0.8)
    assert moment.citation == "[talk-1 @ 01:02:05]"
    # Models write hours with one digit, two, or as minutes past 59; all name the same moment.
    for label in ("[talk-1 @ 01:02:05]", "[talk-1 @ 1:02:05]", "[talk-1 @ 62:05]", "[talk-1 @ 01:02:07]"):
        assert [c.start for c in parse_citations(f"See {label} and [talk-1 @ 00:01].", [moment])] == [3725.0]


def test_keyframe_text_becomes_readable_sentences() -> None:
    from videoqa_pipeline.ai.types import MEASURED_CAPTION_PREFIX
    from videoqa_pipeline.search.answer import frame_sentences

    offline = f'{MEASURED_CAPTION_PREFIX}A frame, mostly blue, text reading "TOTAL 42". Labels: blue, text. Text on screen: TOTAL  42'
    assert frame_sentences(offline) == ['The screen shows "TOTAL 42".']
    assert frame_sentences(f"{MEASURED_CAPTION_PREFIX}A dark frame, mostly green. Labels: dark, green.") == [
        "A dark frame, mostly green."
    ]
    learned = "A woman points at a chart. Labels: person, chart. Text on screen: Q3 REVENUE +12%"
    assert frame_sentences(learned) == ["A woman points at a chart.", 'The screen shows "Q3 REVENUE +12%".']
    assert frame_sentences("") == []


def test_offline_answer_has_no_boilerplate_and_cites_each_moment_once(searcher: Searcher) -> None:
    """The offline vision step's wording stays out of answers, and a moment whose spoken and
    on-screen sentences both answer is cited once, after both."""
    from videoqa_pipeline.ai.types import MEASURED_CAPTION_PREFIX
    from videoqa_pipeline.search import Moment

    invoice = Moment(
        "office",
        0.0,
        5.0,
        "The invoice total is forty two dollars. Payment is due at the end of the month.",
        f'{MEASURED_CAPTION_PREFIX}A frame, mostly blue, text reading "INVOICE TOTAL 42 DOLLARS". '
        "Labels: blue, text. Text on screen: INVOICE TOTAL 42 DOLLARS",
        "office/keyframes/scene-0000.jpg",
        1.0,
        0.7,
    )
    plain = Moment(
        "office",
        5.0,
        10.0,
        "",
        f"{MEASURED_CAPTION_PREFIX}A dark frame, mostly black. Labels: dark, black.",
        None,
        0.5,
        0.3,
    )
    answer = ExtractiveAnswerer(searcher.embedder).answer("What is the invoice total?", [invoice, plain])
    assert answer.found
    assert "Description from measured facts" not in answer.answer and "Labels:" not in answer.answer
    assert answer.answer.startswith("The invoice total is forty two dollars.")
    assert 'The screen shows "INVOICE TOTAL 42 DOLLARS".' in answer.answer
    assert answer.answer.count("[office @ 00:00]") == 1 and answer.answer.endswith("[office @ 00:00]")
    assert [c.label for c in answer.citations] == ["[office @ 00:00]"]
    assert "forty two dollars" in answer.citations[0].text and "INVOICE" in answer.citations[0].text

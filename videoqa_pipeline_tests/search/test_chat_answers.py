"""Answers written by a chat model on a self-hosted server, and relevance a person can read.

The chat server is the project's loopback test server in the flavour of Ollama, vLLM and
llama-server, called with the real openai SDK. It answers from the prompt the project built (the
first moment's first sentence, cited by the label given with that moment), so these tests check
the prompt, the parsing of the answer and the check of its citations against what was retrieved.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from videoqa_pipeline.ai import AIConfig
from videoqa_pipeline.cli import main
from videoqa_pipeline.search import (
    NOT_FOUND,
    Moment,
    OpenAIAnswerer,
    Searcher,
    SearchFilters,
    answerer_for,
    ask,
    format_relevance,
    format_timestamp,
)
from videoqa_pipeline.search.answer import check_citations
from videoqa_pipeline_tests.ai.openai_test_server import OpenAITestServer
from videoqa_pipeline_tests.search.corpus import Corpus

CHAT = "/v1/chat/completions"
MARS = "Where did the Mars vehicle touch down?"


def _filters(corpus: Corpus) -> SearchFilters:
    return SearchFilters(video_ids=tuple(corpus.video_ids.values()))


def _ask_env(server: OpenAITestServer, model: str) -> dict[str, str]:
    return {
        "VIDEOQA_ASK_BASE_URL": server.base_url,
        "VIDEOQA_ASK_MODEL": model,
        "VIDEOQA_OPENAI_MAX_RETRIES": "0",
    }


@pytest.mark.parametrize(
    ("flavour", "model"),
    [("ollama", "qwen2.5:7b"), ("vllm", "Qwen/Qwen2.5-7B-Instruct"), ("llama.cpp", "any")],
)
def test_a_self_hosted_chat_model_answers_with_checked_citations(
    searcher: Searcher, corpus: Corpus, flavour: str, model: str
) -> None:
    space = corpus.video_ids["space"]
    with OpenAITestServer(flavour, models={model}) as server:
        answerer = answerer_for(searcher, _ask_env(server, model))
        assert isinstance(answerer, OpenAIAnswerer)
        answer = ask(MARS, searcher, answerer, filters=_filters(corpus))
        [request] = server.requests_to(CHAT)
    sent = request.json or {}
    assert sent["model"] == model and sent["temperature"] == 0 and "stream" not in sent
    assert request.headers["authorization"] == "Bearer no-key-needed"
    # The server answered from the prompt: the first moment given is the one retrieval ranked first.
    assert answer.found and answer.method == f"openai:{model}"
    assert answer.answer == f"The rover landed in Jezero crater in February 2021 [{space} @ 00:00]."
    [citation] = answer.citations
    assert (citation.video_id, citation.start, citation.timestamp) == (space, 0.0, "00:00")
    assert citation.relevance is not None and citation.relevance >= 0.3
    assert answer.dropped_citations == []


def test_citations_of_moments_that_were_not_retrieved_are_removed_and_reported(
    searcher: Searcher, corpus: Corpus
) -> None:
    space = corpus.video_ids["space"]
    with OpenAITestServer("ollama") as server:
        server.answer_suffix = f" It also visited the Moon [nowhere @ 09:59] and [{space} @ 04:59]."
        answer = ask(
            MARS, searcher, answerer_for(searcher, _ask_env(server, "qwen2.5:7b")), filters=_filters(corpus)
        )
    assert answer.dropped_citations == ["[nowhere @ 09:59]", f"[{space} @ 04:59]"]
    assert "nowhere" not in answer.answer and "04:59" not in answer.answer
    assert answer.answer.endswith("It also visited the Moon and.")  # no stray spaces where labels were
    assert [c.timestamp for c in answer.citations] == ["00:00"]
    assert answer.to_dict()["dropped_citations"] == answer.dropped_citations


def test_a_label_inside_a_moment_is_written_as_that_moments_label() -> None:
    moment = Moment("talk", 3600.0, 3610.0, "Late fact.", "", None, 1.0, 0.7)
    text, citations, dropped = check_citations(
        "It is late [talk @ 1:00:04] , see [talk @ 01:00:00].", [moment]
    )
    assert text == "It is late [talk @ 01:00:00] , see [talk @ 01:00:00]."
    assert [c.label for c in citations] == ["[talk @ 01:00:00]"] and dropped == []
    assert format_timestamp(59.9) == "00:59" and format_timestamp(3725) == "01:02:05"


def test_nothing_relevant_is_not_found_without_calling_the_server(searcher: Searcher, corpus: Corpus) -> None:
    with OpenAITestServer("vllm") as server:
        answerer = answerer_for(searcher, _ask_env(server, "m"))
        answer = ask(
            "Which football team won the championship final last season?",
            searcher,
            answerer,
            filters=_filters(corpus),
        )
        assert server.requests_to(CHAT) == []
    assert not answer.found and answer.answer == NOT_FOUND and answer.method == "openai:m"


def test_a_model_saying_not_found_is_not_found(searcher: Searcher, corpus: Corpus) -> None:
    with OpenAITestServer("ollama") as server:
        config = AIConfig.from_env(_ask_env(server, "qwen2.5:7b"))
        answer = OpenAIAnswerer(config).answer("What colour is the ferry?", [])  # no moments in the prompt
        [request] = server.requests_to(CHAT)
    assert "Moments:" in request.json["messages"][1]["content"]  # type: ignore[index]
    assert not answer.found and answer.answer == NOT_FOUND and answer.citations == []


def test_videoqa_ask_with_a_local_chat_server(cli_env: dict[str, str], corpus: Corpus) -> None:
    space = corpus.video_ids["space"]
    videos = [arg for video in corpus.video_ids.values() for arg in ("--video", video)]
    with OpenAITestServer("ollama", models={"qwen2.5:7b"}) as server:
        server.answer_suffix = " [ghost @ 00:01]"
        env = {**cli_env, **_ask_env(server, "qwen2.5:7b")}
        text = CliRunner().invoke(main, ["ask", MARS, *videos], env=env)
        document = CliRunner().invoke(main, ["ask", MARS, *videos, "--json"], env=env)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()  # the warning about the ghost citation goes to stderr
    assert lines[0] == f"The rover landed in Jezero crater in February 2021 [{space} @ 00:00]."
    assert any(line.startswith(f"  [{space} @ 00:00] (relevance ") and "%)" in line for line in lines)
    assert "not among the retrieved moments: [ghost @ 00:01]" in text.output
    answer = json.loads(document.stdout)
    assert answer["method"] == "openai:qwen2.5:7b" and answer["dropped_citations"] == ["[ghost @ 00:01]"]
    assert 0.3 <= answer["citations"][0]["relevance"] <= 1.0
    assert all({"relevance", "score", "similarity"} <= set(m) for m in answer["moments"])


@pytest.fixture()
def cli_env(database, corpus: Corpus, tmp_path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    from videoqa_pipeline_tests.search.test_cli import database_url

    return {
        "DATABASE_URL": database_url(database),
        "VIDEOQA_HOME": str(tmp_path),
        "OPENAI_API_KEY": "",
        "VIDEOQA_AI_PROVIDER": "local",
        "LOG_LEVEL": "WARNING",
    }


def test_relevance_is_the_same_number_in_every_search_mode(searcher: Searcher, corpus: Corpus) -> None:
    """Hybrid, vector and full-text results of one moment show one relevance (its cosine to the
    query, 0-1); the raw fusion scores differ by mode and by an order of magnitude from it."""
    harbor = corpus.video_ids["harbor"]
    query = "lighthouse painted red and white"
    by_mode = {}
    for mode in ("hybrid", "vector", "text"):
        moments = searcher.search(query, k=3, filters=_filters(corpus), mode=mode).moments  # type: ignore[arg-type]
        [lighthouse] = [m for m in moments if m.video_id == harbor and m.start == 10.0]
        by_mode[mode] = lighthouse
    relevances = {mode: m.relevance for mode, m in by_mode.items()}
    assert relevances["hybrid"] == pytest.approx(relevances["vector"]) == pytest.approx(relevances["text"])
    assert 0.5 <= relevances["hybrid"] <= 1.0  # type: ignore[operator]
    assert by_mode["hybrid"].score < 0.05  # RRF: meaningless to a person, kept for ordering only
    shown = by_mode["hybrid"].to_dict()
    assert shown["relevance"] == round(relevances["hybrid"], 3) and "score" in shown  # type: ignore[arg-type]
    assert format_relevance(relevances["hybrid"]).endswith("%") and format_relevance(None) == "n/a"


def test_an_answer_citing_no_moment_is_marked_uncited_with_the_moments_it_had(
    cli_env: dict[str, str], corpus: Corpus
) -> None:
    """Small chat models often leave the labels out: the answer is shown, marked, never passed off
    as grounded, and the moments it was given are listed for the reader to check."""
    space = corpus.video_ids["space"]
    videos = [arg for video in corpus.video_ids.values() for arg in ("--video", video)]
    with OpenAITestServer("llama.cpp") as server:
        server.cites = False
        env = {**cli_env, **_ask_env(server, "smollm2")}
        text = CliRunner().invoke(main, ["ask", MARS, *videos], env=env)
        document = CliRunner().invoke(main, ["ask", MARS, *videos, "--json"], env=env)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0] == "The rover landed in Jezero crater in February 2021."
    assert "  (uncited: the model named none of the moments it was given, which were:)" in lines
    assert any(line.startswith(f"  [{space} @ 00:00] (relevance ") for line in lines)
    answer = json.loads(document.stdout)
    assert answer["uncited"] is True and answer["found"] is True and answer["citations"] == []

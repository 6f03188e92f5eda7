"""`videoqa search` and `videoqa ask` against the real databases, in-process with click's runner."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict

from videoqa_pipeline.cli import main
from videoqa_pipeline.storage.database import Database
from videoqa_pipeline_tests.search.corpus import Corpus


def database_url(database: Database) -> str:
    """``DATABASE_URL`` form (``postgresql://``) of a test database's connection string."""
    if database.url.startswith("postgresql://"):
        return database.url
    params = conninfo_to_dict(database.url)
    host = quote(str(params.get("host", "localhost")), safe="")
    return (
        f"postgresql://{params.get('user', 'postgres')}@{host}:{params.get('port', 5432)}/{params['dbname']}"
    )


@pytest.fixture()
def cli_env(database: Database, corpus: Corpus, tmp_path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url(database),
        "VIDEOQA_HOME": str(tmp_path),
        "OPENAI_API_KEY": "",
        "VIDEOQA_AI_PROVIDER": "local",
        "LOG_LEVEL": "WARNING",
    }


def test_search_json_lists_moments_best_first_in_seconds(cli_env: dict[str, str], corpus: Corpus) -> None:
    harbor, space = corpus.video_ids["harbor"], corpus.video_ids["space"]
    result = CliRunner().invoke(
        main,
        [
            "search",
            "When was the lighthouse painted?",
            "--video",
            harbor,
            "--video",
            space,
            "-k",
            "3",
            "--json",
        ],
        env=cli_env,
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert list(document) == ["results"]
    results = document["results"]
    assert len(results) == 3
    assert set(results[0]) == {"video_id", "start", "end", "text", "relevance", "score", "keyframe"}
    assert results[0] == {
        "video_id": harbor,
        "start": 10.0,
        "end": 15.0,
        "text": "The lighthouse was painted red and white in 1921.",
        "relevance": results[0]["relevance"],
        "score": results[0]["score"],
        "keyframe": f"{harbor}/keyframes/scene-0002.jpg",
    }
    # Relevance is the cosine to the query on a 0-1 scale: the answering moment is clearly relevant.
    assert results[0]["relevance"] >= 0.3
    assert all(0.0 <= entry["relevance"] <= 1.0 for entry in results)
    scores = [entry["score"] for entry in results]
    assert scores == sorted(scores, reverse=True)
    assert {entry["video_id"] for entry in results} <= {harbor, space}


def test_search_text_output_and_time_range(cli_env: dict[str, str], corpus: Corpus) -> None:
    kitchen = corpus.video_ids["kitchen"]
    result = CliRunner().invoke(
        main, ["search", "dough", "--video", kitchen, "--from", "6", "-k", "1"], env=cli_env
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"1. {kitchen} @ 00:05-00:10")
    first_line = result.output.splitlines()[0]
    assert re.search(r"  relevance \d{1,3}%$", first_line), first_line  # a percentage, not a raw RRF score
    assert "screen:  Text on screen: SOURDOUGH RECIPE" in result.output
    bad = CliRunner().invoke(main, ["search", "dough", "--from", "9", "--to", "2"], env=cli_env)
    assert bad.exit_code == 2 and "ends before it starts" in bad.output


def test_ask_prints_a_cited_answer_or_not_found(cli_env: dict[str, str], corpus: Corpus) -> None:
    harbor = corpus.video_ids["harbor"]
    videos = [arg for video in corpus.video_ids.values() for arg in ("--video", video)]
    result = CliRunner().invoke(
        main, ["ask", "How frequently does the ferry sail?", *videos, "--json"], env=cli_env
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["found"] is True and f"[{harbor} @ 00:00]" in answer["answer"]
    assert answer["citations"][0]["video_id"] == harbor and answer["citations"][0]["start"] == 0.0
    missing = CliRunner().invoke(
        main, ["ask", "Which football team won the championship final last season?", *videos], env=cli_env
    )
    assert missing.exit_code == 0 and missing.output.strip() == "not found in the videos"


def test_search_reports_an_unreachable_database(tmp_path) -> None:
    env = {
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "POSTGRES_TIMEOUT": "1",
        "VIDEOQA_HOME": str(tmp_path),
    }
    result = CliRunner().invoke(main, ["search", "ferry"], env=env)
    assert result.exit_code == 1
    assert "Could not connect to the metadata database" in result.output

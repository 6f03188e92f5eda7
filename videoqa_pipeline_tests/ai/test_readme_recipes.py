"""The README's self-hosted recipes, run: each env block against the test server in its flavour.

A recipe is a ``bash`` block after ``<!-- recipe: FLAVOUR -->`` in README.md. Its variables are
used as written, except that each server address is pointed at a loopback test server of that
flavour (one per address, as the recipe would run one server per address), which knows exactly
the models the recipe names.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from videoqa_pipeline.ai import AIConfig, get_frame_analyzer
from videoqa_pipeline.ai.openai_embed import OpenAIEmbedder
from videoqa_pipeline.search import Moment, OpenAIAnswerer
from videoqa_pipeline_tests.ai.conftest import text_frame_jpeg
from videoqa_pipeline_tests.ai.openai_test_server import OpenAITestServer

README = Path(__file__).resolve().parents[2] / "README.md"
_RECIPE = re.compile(r"<!-- recipe: (\S+) -->\s*```bash\n(.*?)```", re.S)


def recipes() -> list[tuple[str, dict[str, str]]]:
    """(flavour, env) of every recipe in the README, in order."""
    found = []
    for flavour, body in _RECIPE.findall(README.read_text("utf-8")):
        env = dict(line.split("=", 1) for line in body.strip().splitlines() if "=" in line)
        found.append((flavour, env))
    return found


def test_the_readme_has_a_recipe_per_server_type() -> None:
    assert [flavour for flavour, _ in recipes()] == ["vllm", "ollama", "llama.cpp", "openai"]


@pytest.mark.parametrize(("flavour", "env"), recipes(), ids=[flavour for flavour, _ in recipes()])
def test_a_readme_recipe_works_against_its_servers_flavour(flavour: str, env: dict[str, str]) -> None:
    models = {value for name, value in env.items() if name.endswith("_MODEL")}
    origins = sorted({urlsplit(value).netloc for name, value in env.items() if name.endswith("_BASE_URL")})
    with contextlib.ExitStack() as stack:
        servers = {
            origin: stack.enter_context(OpenAITestServer(flavour, models=models)) for origin in origins
        }
        local = {
            name: value.replace(
                f"http://{urlsplit(value).netloc}/v1", servers[urlsplit(value).netloc].base_url
            )
            if name.endswith("_BASE_URL")
            else value
            for name, value in env.items()
        }
        config = AIConfig.from_env({**local, "VIDEOQA_OPENAI_MAX_RETRIES": "0"})
        assert config.problems() == []
        assert config.transcription_provider == "local"  # speech stays offline in every recipe
        assert config.vision_provider == config.ask_provider == "openai"

        [analysis] = get_frame_analyzer(config).analyze([text_frame_jpeg(["INVOICE 2024"])]).analyses
        assert (
            analysis.ocr_text == "INVOICE 2024"
            and analysis.caption
            and analysis.model == env["VIDEOQA_VISION_MODEL"]
        )

        if "VIDEOQA_EMBED_BASE_URL" in env:
            batch = OpenAIEmbedder(config).embed(["a ferry leaves pier seven"])
            assert batch.vectors.shape[0] == 1 and batch.model == env["VIDEOQA_EMBED_MODEL"]

        moment = Moment(
            "harbor", 10.0, 15.0, "The lighthouse was painted in 1921. It is red.", "", None, 0.03, 0.7
        )
        answer = OpenAIAnswerer(config).answer("When was the lighthouse painted?", [moment])
        assert answer.answer == "The lighthouse was painted in 1921 [harbor @ 00:10]."
        assert [c.label for c in answer.citations] == ["[harbor @ 00:10]"]

        requests = [r for server in servers.values() for r in server.requests]
    assert requests and all(r.headers["authorization"] == "Bearer no-key-needed" for r in requests)
    assert all(not (r.json or {}).get("stream") for r in requests)

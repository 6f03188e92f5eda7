"""Self-hosted model servers as providers: per-protocol endpoints, no key, their quirks.

The servers are the project's loopback test server in the flavour of vLLM, Ollama and llama.cpp's
llama-server (see ``openai_test_server.FLAVOURS`` for what each reproduces), called with the real
openai SDK.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from videoqa_pipeline.ai import AIConfig, AIProviderError, get_frame_analyzer
from videoqa_pipeline.ai.openai_asr import OpenAITranscriber
from videoqa_pipeline.ai.openai_embed import OpenAIEmbedder
from videoqa_pipeline.ai.openai_vision import OpenAIFrameAnalyzer, parse_analysis_reply
from videoqa_pipeline.cli import main
from videoqa_pipeline.settings import Settings
from videoqa_pipeline_tests.ai.conftest import text_frame_jpeg
from videoqa_pipeline_tests.ai.openai_test_server import OpenAITestServer, error_reply, flavoured_error

SECRET = "sk-test-very-secret-key-9876"
CHAT = "/v1/chat/completions"
EXPECTED = {
    "caption": "A slide with large white text on a red background.",
    "labels": ["slide", "text"],
    "visible_text": "INVOICE 2024",
}


def local_vision(server: OpenAITestServer, model: str = "llava:7b", **env: str) -> AIConfig:
    """Vision on ``server`` by its own base URL, the rest offline, retries off (fast failures)."""
    return AIConfig.from_env(
        {
            "VIDEOQA_VISION_BASE_URL": server.base_url,
            "VIDEOQA_VISION_MODEL": model,
            "VIDEOQA_OPENAI_MAX_RETRIES": "0",
            **env,
        }
    )


# --- settings -------------------------------------------------------------------------------


def test_a_protocol_base_url_selects_the_compatible_client_for_that_protocol_only() -> None:
    config = AIConfig.from_env(
        {"VIDEOQA_VISION_BASE_URL": "http://127.0.0.1:11434/v1", "VIDEOQA_VISION_MODEL": "llava:7b"}
    )
    assert (config.transcription_provider, config.vision_provider, config.embedding_provider) == (
        "local",
        "openai",
        "local",
    )
    assert config.base_url_for("vision") == "http://127.0.0.1:11434/v1"
    assert config.api_key_for("vision") is None  # a placeholder goes out: no key needed
    assert config.problems() == []
    # An explicit provider of the protocol still wins over its URL.
    explicit = AIConfig.from_env(
        {"VIDEOQA_VISION_BASE_URL": "http://127.0.0.1:11434/v1", "VIDEOQA_VISION_PROVIDER": "local"}
    )
    assert explicit.vision_provider == "local"


def test_every_protocol_falls_back_to_openai_base_url_and_the_old_settings_mean_what_they_did() -> None:
    assert AIConfig.from_env({"OPENAI_BASE_URL": "http://gpu:8000/v1"}).vision_provider == "local"
    config = AIConfig.from_env({"OPENAI_BASE_URL": "http://gpu:8000/v1", "VIDEOQA_AI_PROVIDER": "openai"})
    assert {config.base_url_for(p) for p in ("transcription", "vision", "embedding", "ask")} == {
        "http://gpu:8000/v1"
    }
    assert config.ask_provider == "local"  # answers followed only the key, and still do
    keyed = AIConfig.from_env({"OPENAI_API_KEY": SECRET, "VIDEOQA_ASR_PROVIDER": "local"})
    assert (keyed.transcription_provider, keyed.vision_provider, keyed.ask_provider) == (
        "local",
        "openai",
        "openai",
    )
    assert keyed.base_url_for("vision") is None and keyed.api_key_for("vision") == SECRET


def test_the_openai_key_goes_only_to_openai_and_to_openai_base_urls_server() -> None:
    env = {
        "OPENAI_API_KEY": SECRET,
        "OPENAI_BASE_URL": "https://gateway.example.com/v1",
        "VIDEOQA_EMBED_BASE_URL": "https://gateway.example.com/embeddings/v1",
        "VIDEOQA_VISION_BASE_URL": "http://127.0.0.1:8080/v1",
    }
    config = AIConfig.from_env(env)
    assert config.api_key_for("transcription") == SECRET
    assert config.api_key_for("embedding") == SECRET  # same server as OPENAI_BASE_URL
    assert config.api_key_for("vision") is None  # another server never sees it


def test_a_server_started_with_its_own_key_gets_that_key() -> None:
    with OpenAITestServer("vllm", models={"m"}) as server:
        config = local_vision(server, "m", OPENAI_API_KEY=SECRET, VIDEOQA_VISION_API_KEY="vllm-key-0001")
        get_frame_analyzer(config).analyze([text_frame_jpeg(["X"])])
        [request] = server.requests_to(CHAT)
    assert request.headers["authorization"] == "Bearer vllm-key-0001"
    assert config.describe()["vision_endpoint"].endswith("(VIDEOQA_VISION_API_KEY)")
    assert "vllm-key-0001" not in repr(config) and "vllm-key-0001" not in json.dumps(config.describe())


def test_ask_model_and_its_older_name() -> None:
    assert AIConfig.from_env({"VIDEOQA_CHAT_MODEL": "gpt-x"}).ask_model == "gpt-x"
    both = AIConfig.from_env({"VIDEOQA_CHAT_MODEL": "gpt-x", "VIDEOQA_ASK_MODEL": "qwen2.5:7b"})
    assert both.ask_model == "qwen2.5:7b"
    served = AIConfig.from_env({"VIDEOQA_ASK_BASE_URL": "http://127.0.0.1:1234/v1"})
    assert served.ask_provider == "openai" and served.effective_model("ask") == "gpt-4o-mini"


def test_malformed_urls_and_keyless_openai_are_problems_naming_the_variable() -> None:
    config = AIConfig.from_env(
        {
            "VIDEOQA_ASR_BASE_URL": "127.0.0.1:8000/v1",
            "VIDEOQA_EMBED_BASE_URL": "http://host:port/v1",
            "VIDEOQA_VISION_PROVIDER": "openai",
        }
    )
    problems = config.problems()
    assert any("VIDEOQA_ASR_BASE_URL" in p and "not an http(s) URL" in p for p in problems), problems
    assert any("VIDEOQA_EMBED_BASE_URL" in p and "not a valid URL" in p for p in problems), problems
    assert any("for vision" in p and "OPENAI_API_KEY" in p for p in problems), problems
    assert len(problems) == 3


def test_check_config_shows_each_protocols_endpoint_without_secrets() -> None:
    env = {
        "OPENAI_API_KEY": SECRET,
        "VIDEOQA_VISION_BASE_URL": "http://user:hunter2@127.0.0.1:11434/v1?token=abc",
        "VIDEOQA_VISION_MODEL": "llava:7b",
        "VIDEOQA_ASK_BASE_URL": "http://127.0.0.1:8000/v1",
        "VIDEOQA_ASR_PROVIDER": "local",
        "VIDEOQA_EMBED_BASE_URL": "not a url",
    }
    result = CliRunner().invoke(main, ["check-config", "--json"], env=env)
    assert result.exit_code == 1
    document = json.loads(result.output.split("\n\n1 problem")[0])
    shown = document["settings"]
    assert shown["vision"] == "openai: llava:7b"
    assert shown["vision_endpoint"] == "http://user:***@127.0.0.1:11434/v1 (no API key needed)"
    assert shown["ask_endpoint"] == "http://127.0.0.1:8000/v1 (no API key needed)"
    assert shown["embedding_endpoint"].startswith("not a url")
    assert "transcription_endpoint" not in shown  # offline: no endpoint
    assert [p for p in document["problems"] if "VIDEOQA_EMBED_BASE_URL" in p]
    assert SECRET not in result.output and "hunter2" not in result.output and "token=abc" not in result.output
    keyed = Settings.from_env({"OPENAI_API_KEY": SECRET}).describe()
    assert keyed["vision_endpoint"] == "https://api.openai.com/v1 (default) (OPENAI_API_KEY)"


def test_the_dagster_resource_carries_the_per_protocol_settings() -> None:
    from videoqa_pipeline.defs.resources import AIResource

    env = {
        "OPENAI_API_KEY": SECRET,
        "VIDEOQA_VISION_BASE_URL": "http://127.0.0.1:11434/v1",
        "VIDEOQA_ASR_BASE_URL": "http://127.0.0.1:8001/v1",
        "VIDEOQA_EMBED_BASE_URL": "http://127.0.0.1:8002/v1",
        "VIDEOQA_ASK_BASE_URL": "http://127.0.0.1:8003/v1",
        "VIDEOQA_ASK_MODEL": "qwen2.5:7b",
        "VIDEOQA_VISION_API_KEY": "vision-secret-0001",
    }
    settings = Settings.from_env(env)
    assert AIResource.from_settings(settings, secret_as_env_var=False).config() == settings.ai
    shown = repr(AIResource.from_settings(settings).model_dump())
    assert SECRET not in shown and "vision-secret-0001" not in shown  # EnvVar references, resolved in the run


# --- the servers ----------------------------------------------------------------------------


def test_llama_cpp_rejects_the_schema_once_then_frames_go_without_it() -> None:
    with OpenAITestServer("llama.cpp") as server:
        analyzer = OpenAIFrameAnalyzer(local_vision(server))
        first = analyzer.analyze([text_frame_jpeg(["INVOICE 2024"])])
        second = analyzer.analyze([text_frame_jpeg(["INVOICE 2024"])] * 2)
        requests = server.requests_to(CHAT)
    # One rejected request with the schema, its retry without, then no schema at all.
    assert ["response_format" in (r.json or {}) for r in requests] == [True, False, False, False]
    assert not analyzer.uses_schema
    for analysis in [*first.analyses, *second.analyses]:
        assert (analysis.caption, analysis.labels, analysis.ocr_text) == tuple(EXPECTED.values())
        assert analysis.facts == {}  # fenced, single-quoted, trailing comma: all read, nothing to warn
    assert all(r.headers["authorization"] == "Bearer no-key-needed" for r in requests)
    assert all("stream" not in (r.json or {}) for r in requests)
    assert all((r.json or {})["max_tokens"] == 600 for r in requests)  # a rambling small model is cut off


def test_ollama_before_structured_outputs_answers_in_prose_and_is_parsed() -> None:
    with OpenAITestServer("ollama-0.4", models={"llava:7b"}) as server:
        batch = get_frame_analyzer(local_vision(server)).analyze([text_frame_jpeg(["X"])])
        [request] = server.requests_to(CHAT)
    assert request.json and request.json["response_format"]["type"] == "json_schema"  # sent, ignored
    [analysis] = batch.analyses
    assert (analysis.caption, analysis.labels, analysis.ocr_text) == tuple(EXPECTED.values())


def test_vllm_enforces_the_schema_and_keeps_receiving_it() -> None:
    with OpenAITestServer("vllm", models={"Qwen/Qwen2-VL-2B-Instruct"}) as server:
        analyzer = OpenAIFrameAnalyzer(local_vision(server, "Qwen/Qwen2-VL-2B-Instruct"))
        batch = analyzer.analyze([text_frame_jpeg(["X"])] * 2)
        requests = server.requests_to(CHAT)
    assert all((r.json or {})["response_format"]["json_schema"]["strict"] for r in requests)
    assert analyzer.uses_schema and batch.analyses[0].ocr_text == "INVOICE 2024"


@pytest.mark.parametrize(
    ("flavour", "message"),
    [
        ("ollama", 'model "llava:13b" not found, try pulling it first'),
        ("vllm", "The model `llava:13b` does not exist."),
    ],
)
def test_an_unknown_model_is_a_permanent_error_with_the_servers_words(flavour: str, message: str) -> None:
    with OpenAITestServer(flavour, models={"llava:7b"}) as server:
        with pytest.raises(AIProviderError) as info:
            get_frame_analyzer(local_vision(server, "llava:13b")).analyze([text_frame_jpeg(["X"])])
        assert len(server.requests_to(CHAT)) == 1  # a 404 is not retried, with or without schema
    error = str(info.value)
    assert info.value.permanent and info.value.status_code == 404
    assert message in error and "VIDEOQA_VISION_BASE_URL" in error and server.base_url in error


@pytest.mark.parametrize(
    ("flavour", "said"), [("llama.cpp", "File Not Found"), ("ollama", "404 page not found")]
)
def test_servers_without_transcription_say_so(flavour: str, said: str, speech_wav: Path) -> None:
    with OpenAITestServer(flavour) as server:
        config = AIConfig.from_env(
            {"VIDEOQA_ASR_BASE_URL": server.base_url, "VIDEOQA_OPENAI_MAX_RETRIES": "0"}
        )
        with pytest.raises(AIProviderError) as info:
            OpenAITranscriber(config).transcribe(speech_wav)
    assert info.value.permanent and info.value.status_code == 404
    assert said in str(info.value) and "local provider" in str(info.value)


def test_embeddings_from_a_local_server_need_no_key(caplog: pytest.LogCaptureFixture) -> None:
    with OpenAITestServer("ollama", models={"nomic-embed-text"}) as server:
        config = AIConfig.from_env(
            {
                "OPENAI_API_KEY": SECRET,
                "VIDEOQA_EMBED_BASE_URL": server.base_url,
                "VIDEOQA_EMBED_MODEL": "nomic-embed-text",
            }
        )
        batch = OpenAIEmbedder(config).embed(["hello", "world"])
        [request] = server.requests_to("/v1/embeddings")
    assert batch.vectors.shape == (2, 1536) and batch.model == "nomic-embed-text"
    assert request.headers["authorization"] == "Bearer no-key-needed"  # the OpenAI key stays home
    # A self-hosted model has no price and needs none: no "add it to the price table" warning.
    assert batch.usage.cost_usd == 0.0 and "No price" not in caplog.text


def test_a_400_that_is_not_about_the_schema_fails_at_once_with_one_request() -> None:
    with OpenAITestServer("llama.cpp") as server:
        server.script(
            CHAT, flavoured_error(server.flavour, 400, "the request exceeds the available context size")
        )
        analyzer = OpenAIFrameAnalyzer(local_vision(server))
        with pytest.raises(AIProviderError, match="exceeds the available context size") as info:
            analyzer.analyze([text_frame_jpeg(["X"])])
        assert len(server.requests_to(CHAT)) == 1
    assert info.value.permanent and analyzer.uses_schema


def test_a_server_refusing_max_tokens_keeps_the_schema() -> None:
    with OpenAITestServer("vllm") as server:
        server.script(
            CHAT,
            flavoured_error(
                server.flavour,
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.",
            ),
        )
        analyzer = OpenAIFrameAnalyzer(local_vision(server, "o4-mini", VIDEOQA_OPENAI_MAX_CONCURRENCY="1"))
        analyzer.analyze([text_frame_jpeg(["X"])] * 2)
        bodies = [r.json or {} for r in server.requests_to(CHAT)]
    assert [("max_tokens" in b, "response_format" in b) for b in bodies] == [
        (True, True),
        (False, True),
        (False, True),
    ]
    assert analyzer.uses_schema


def test_a_model_without_structured_outputs_on_openai_is_asked_again_without_the_schema(
    api_server: OpenAITestServer,
) -> None:
    api_server.script(
        CHAT,
        error_reply(
            400,
            "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
        ),
    )
    config = AIConfig.from_env(
        {
            "OPENAI_API_KEY": SECRET,
            "OPENAI_BASE_URL": api_server.base_url,
            "VIDEOQA_VISION_MODEL": "gpt-4-turbo",
        }
    )
    analyzer = OpenAIFrameAnalyzer(config)
    [analysis] = analyzer.analyze([text_frame_jpeg(["X"])]).analyses
    first, retry = api_server.requests_to(CHAT)
    assert "response_format" in (first.json or {}) and "response_format" not in (retry.json or {})
    assert retry.headers["authorization"] == f"Bearer {SECRET}"  # OPENAI_BASE_URL's server gets the key
    assert analysis.ocr_text == "INVOICE 2024" and not analyzer.uses_schema


def test_a_malformed_reply_is_a_warning_not_a_failed_stage() -> None:
    with OpenAITestServer("llama.cpp") as server:
        server.vision_reply = '```json\n{"caption": "A red slide", "labels": ["sl'
        batch = get_frame_analyzer(local_vision(server)).analyze([text_frame_jpeg(["X"])])
    [analysis] = batch.analyses
    assert analysis.caption == '{"caption": "A red slide", "labels": ["sl'  # no fence marks
    assert "plain text" in analysis.facts["warning"]


@pytest.mark.parametrize(
    ("reply", "fields", "warned"),
    [
        (json.dumps(EXPECTED), EXPECTED, False),
        ("```json\n" + json.dumps(EXPECTED) + "\n```", EXPECTED, False),
        ("Here you go: " + json.dumps(EXPECTED) + " Hope it helps!", EXPECTED, False),
        ("{'caption': 'A cat.', 'labels': ['Cat', 'sofa',], 'visible_text': '',}", None, False),
        ('{"description": "A cat.", "tags": "cat, sofa"}', None, True),
        ('{"caption": "A cat.", "labels": ["cat"], "visible_text": ["EXIT", "B2"]}', None, False),
        ("A cat sleeping on a sofa.", None, True),
        ("", None, True),
    ],
)
def test_replies_of_small_models_are_read_tolerantly(
    reply: str, fields: dict[str, object] | None, warned: bool
) -> None:
    parsed, warning = parse_analysis_reply(reply)
    assert (warning is not None) is warned, warning
    if fields is not None:
        assert parsed == fields
    elif reply.startswith("{'caption'"):
        assert parsed == {"caption": "A cat.", "labels": ["cat", "sofa"], "visible_text": ""}
    elif reply.startswith('{"description"'):
        assert parsed == {"caption": "A cat.", "labels": ["cat", "sofa"], "visible_text": ""}
        assert warning == "the model's JSON had no visible_text: left empty"
    elif "EXIT" in reply:
        assert parsed["visible_text"] == "EXIT\nB2"
    elif reply:
        assert parsed == {"caption": "A cat sleeping on a sofa.", "labels": [], "visible_text": ""}
    else:
        assert parsed["caption"] is None


def test_the_frame_analyses_stage_succeeds_with_a_warning_in_its_metadata(tmp_path: Path) -> None:
    import pandas as pd

    from videoqa_pipeline.options import ProcessingOptions
    from videoqa_pipeline.steps.frame_analysis import analyze_keyframes
    from videoqa_pipeline.storage.blobs import LocalBlobStore

    store = LocalBlobStore(tmp_path)
    keys = [f"v/keyframes/scene-{i:04d}.jpg" for i in range(2)]
    for key in keys:
        store.put_bytes(key, text_frame_jpeg(["S"]))
    keyframes = pd.DataFrame({"scene_index": [0, 1], "timestamp_seconds": [0.5, 75.4], "blob_key": keys})
    with OpenAITestServer("llama.cpp") as server:
        server.vision_reply = "A slide that says S."
        analyzer = get_frame_analyzer(local_vision(server))
        result = analyze_keyframes(keyframes, "v", store, lambda: analyzer, ProcessingOptions())
    assert [row["caption"] for row in result.rows] == ["A slide that says S."] * 2
    assert result.warning is not None and result.warning.startswith("2 of 2 frames read loosely: 00:00.5 ")
    assert "01:15.4 the model answered in plain text" in result.warning

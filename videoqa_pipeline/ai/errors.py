"""Errors raised by the AI layer.

One exception type with a ``permanent`` flag lets the Dagster layer choose between failing
fast (bad input, bad credentials, unknown model) and retrying with backoff (rate limits
that outlasted the client's own retries, server errors, timeouts, connection problems).
"""

from __future__ import annotations


class AIProviderError(Exception):
    """A provider could not do what was asked.

    Attributes:
        permanent: ``True`` when retrying cannot help (4xx, unreadable input, missing
            model); ``False`` for transient failures worth retrying later.
        status_code: The HTTP status from a remote API, when there was one.
    """

    def __init__(self, message: str, *, permanent: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status_code = status_code

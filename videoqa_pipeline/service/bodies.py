"""Request bodies: one bounded reader and one strict JSON decoder for every route of the service.

What a client sends is the client's problem when it is wrong, so everything here raises
:class:`ClientError`, which the service's guard (:mod:`videoqa_pipeline.service.guard`) turns
into a 4xx JSON answer with the reason, counted in ``/metrics``. The decoding itself is
:func:`videoqa_pipeline.jsonsafe.decode_json`, the one strict decoder the SQS sensor and the job
ledger use too: ``NaN``/``Infinity``, numbers beyond a double, integers of thousands of digits,
nesting thousands deep and lone UTF-16 surrogates are refused with a reason, never a 500.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from videoqa_pipeline import jsonsafe
from videoqa_pipeline.jsonsafe import MAX_INTEGER_DIGITS, MAX_JSON_DEPTH

__all__ = ["MAX_INTEGER_DIGITS", "MAX_JSON_DEPTH", "ClientError", "decode_json", "read_body"]


class ClientError(Exception):
    """A request the client must change: answered with ``status`` and ``{"error", "detail"}``.

    Attributes:
        status: The HTTP status (4xx).
        error: A short machine-readable code (``invalid_json``, ``body_too_large``, ...).
        detail: What is wrong and what to send instead.
    """

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail


def decode_json(body: bytes, *, what: str = "the body") -> Any:
    """Decode a request body with the project's strict decoder (:func:`jsonsafe.decode_json`).

    Raises:
        ClientError: 400 ``invalid_json`` with the decoder's reason.
    """
    try:
        return jsonsafe.decode_json(body, what=what)
    except jsonsafe.JsonRefused as error:
        raise ClientError(400, "invalid_json", str(error)) from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole request body, refused as soon as it grows past ``max_bytes``.

    Raises:
        ClientError: 413 ``body_too_large`` (by ``content-length`` before reading, or while reading).
    """
    too_large = ClientError(
        413,
        "body_too_large",
        f"the body is larger than {max_bytes} bytes (VIDEOQA_HTTP_MAX_BODY_BYTES): requests are small "
        "JSON objects; pass large data by URI (source_uri)",
    )
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 15 or int(declared) > max_bytes):
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)

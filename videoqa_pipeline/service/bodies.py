"""Request bodies: one bounded reader and one strict JSON decoder for every route of the service.

What a client sends is the client's problem when it is wrong, so everything here raises
:class:`ClientError`, which the service's guard (:mod:`videoqa_pipeline.service.guard`) turns
into a 4xx JSON answer with the reason, counted in ``/metrics``. Python's ``json`` module accepts
more than JSON and more than the rest of the service can hold, and each of these used to end in
a 500 somewhere downstream:

* ``NaN``, ``Infinity`` and numbers that overflow to infinity (``1e999``), which are not JSON;
* integers of thousands of digits (Python refuses above 4300 digits with a ``ValueError`` that is
  not a ``JSONDecodeError``; below that, ``int(float)`` conversions and PostgreSQL overflow);
* nesting thousands deep (``RecursionError`` in the decoder, or later in validation or encoding);
* ``\\ud800``-style escapes of lone UTF-16 surrogates, which decode to a Python string that
  cannot be encoded as UTF-8 (PostgreSQL, logs and JSON answers all fail on it).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request

#: Deepest accepted nesting of arrays and objects; our messages need three levels.
MAX_JSON_DEPTH = 32
#: Most digits of an integer; our largest integers are IDs and counts (at most 19 digits).
MAX_INTEGER_DIGITS = 40

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


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


class _Refused(ValueError):
    """Raised from the decoder's hooks; becomes a :class:`ClientError`."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _Refused(
            f"an integer of {len(text.lstrip('-'))} digits is too long (at most {MAX_INTEGER_DIGITS}): "
            f"it starts {text[:20]}"
        )
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is too large: it does not fit a double")
    return value


def _refuse_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number: send a finite number, or leave the field out")


def _depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` outside strings, without parsing (so without recursion)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub('""', text))
    depth = deepest = 0
    for char in brackets:
        depth += 1 if char in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def decode_json(body: bytes, *, what: str = "the body") -> Any:
    """Decode UTF-8 JSON, refusing what JSON does not allow or the service cannot hold.

    Args:
        body: The raw bytes.
        what: How messages name the input (``the body``, ``the message``).

    Returns:
        The decoded value (any JSON type: callers check the shape they need).

    Raises:
        ClientError: 400 ``invalid_json``: not UTF-8, not JSON, nested deeper than
            :data:`MAX_JSON_DEPTH`, an integer longer than :data:`MAX_INTEGER_DIGITS` digits,
            ``NaN``/``Infinity`` or a number beyond a double, or a lone UTF-16 surrogate escape.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ClientError(
            400, "invalid_json", f"{what} is not UTF-8 text (byte {error.start}): send JSON encoded as UTF-8"
        ) from None
    if _depth(text) > MAX_JSON_DEPTH:
        raise ClientError(
            400, "invalid_json", f"{what} nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"
        )
    try:
        value = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant
        )
    except _Refused as error:
        raise ClientError(400, "invalid_json", f"{what} is refused: {error}") from None
    except json.JSONDecodeError as error:
        raise ClientError(400, "invalid_json", f"{what} is not valid JSON: {error}") from None
    except RecursionError:  # unreachable after the depth check; kept as a guard
        raise ClientError(400, "invalid_json", f"{what} is nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ClientError(
                400,
                "invalid_json",
                f"{what} holds a lone UTF-16 surrogate escape (\\ud800 to \\udfff without its pair): "
                "text must be valid Unicode",
            ) from None
    return value


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

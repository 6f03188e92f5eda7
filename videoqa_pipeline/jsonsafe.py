"""One strict JSON decoder for everything that reads JSON someone else wrote.

Webhook and search bodies, SQS messages, and the ``jsonb`` columns of the job ledger that
producers fill with plain SQL all pass through :func:`decode_json`. Python's ``json`` module
accepts more than JSON and more than the rest of the project can hold, and each of these used to
crash something downstream (a 500, a sensor tick that raised on every evaluation):

* ``NaN``, ``Infinity`` and numbers that overflow to infinity (``1e999``), which are not JSON
  (PostgreSQL's ``jsonb`` refuses the first two and stores the third, which Python reads as inf);
* integers of thousands of digits (Python refuses above 4300 digits with a ``ValueError`` that is
  not a ``JSONDecodeError``; below that, ``int(float)`` conversions and PostgreSQL overflow);
* nesting thousands deep (``RecursionError`` in the decoder, or later in validation or encoding);
* ``\\ud800``-style escapes of lone UTF-16 surrogates, which decode to a Python string that
  cannot be encoded as UTF-8 (PostgreSQL, logs and JSON answers all fail on it).

The decoder never raises anything but :class:`JsonRefused` (a ``ValueError``), whatever the
input, so a caller has one exception to turn into a 4xx answer or a failed job. Also here:
:func:`storable_text`, which makes any Python string one PostgreSQL ``text`` accepts. No Dagster,
no web framework: the service, the sensors and the ledger share this module.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Deepest accepted nesting of arrays and objects; our messages need three levels.
MAX_JSON_DEPTH = 32
#: Most digits of an integer; our largest integers are IDs and counts (at most 19 digits).
MAX_INTEGER_DIGITS = 40

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonRefused(ValueError):
    """The input is not JSON the project accepts; the message says what is wrong, without quoting
    more than a few characters of it."""


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise JsonRefused(
            f"an integer of {digits} digits is too long (at most {MAX_INTEGER_DIGITS}): it starts {text[:20]}"
        )
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"the number {text[:40]} is too large: it does not fit a double")
    return value


def _refuse_constant(name: str) -> Any:
    raise JsonRefused(f"{name} is not a JSON number: send a finite number, or leave the field out")


def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` outside strings, without parsing (so without recursion)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub('""', text))
    depth = deepest = 0
    for char in brackets:
        depth += 1 if char in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def decode_json(data: bytes | str, *, what: str = "the body") -> Any:
    """Decode JSON text, refusing what JSON does not allow or the project cannot hold.

    Args:
        data: UTF-8 bytes, or text already decoded (a ``jsonb`` column read as ``text``).
        what: How messages name the input (``the body``, ``the message``, ``options``).

    Returns:
        The decoded value (any JSON type: callers check the shape they need).

    Raises:
        JsonRefused: not UTF-8, not JSON, nested deeper than :data:`MAX_JSON_DEPTH`, an integer
            longer than :data:`MAX_INTEGER_DIGITS` digits, ``NaN``/``Infinity`` or a number beyond
            a double, or a lone UTF-16 surrogate (escaped, or as a character of ``data``).
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as error:
            raise JsonRefused(
                f"{what} is not UTF-8 text (byte {error.start}): send JSON encoded as UTF-8"
            ) from None
    else:
        text = data
    if _LONE_SURROGATE.search(text):
        raise JsonRefused(f"{what} holds a lone UTF-16 surrogate character: text must be valid Unicode")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise JsonRefused(f"{what} nests arrays and objects deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant
        )
    except JsonRefused as error:
        raise JsonRefused(f"{what} is refused: {error}") from None
    except json.JSONDecodeError as error:
        raise JsonRefused(f"{what} is not valid JSON: {error}") from None
    except (RecursionError, ValueError) as error:  # unreachable after the checks above; a guard
        raise JsonRefused(f"{what} cannot be decoded: {type(error).__name__}") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRefused(
                f"{what} holds a lone UTF-16 surrogate escape (\\ud800 to \\udfff without its pair): "
                "text must be valid Unicode"
            ) from None
    return value


def storable_text(text: str) -> str:
    """``text`` as PostgreSQL ``text`` accepts it: NUL becomes U+FFFD, a lone surrogate its
    ``\\udXXX`` escape. Valid text is returned unchanged."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if _LONE_SURROGATE.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text

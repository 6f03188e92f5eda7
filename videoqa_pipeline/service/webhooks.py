"""Standard Webhooks signatures: sign and verify, with no web framework.

The scheme (https://www.standardwebhooks.com) is shared by our intake and our completion
callbacks, so one module holds it:

* headers ``webhook-id`` (unique per event; our intake uses it as the job's external ID),
  ``webhook-timestamp`` (Unix seconds) and ``webhook-signature``;
* the signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``;
* the signature is ``base64(HMAC-SHA256(secret, content))``, sent as ``v1,<signature>``; several
  space-separated signatures are allowed so a sender can sign with the old and the new secret while
  a key is rotated;
* the secret is used as raw UTF-8 bytes, or base64-decoded when it starts with ``whsec_`` (the
  padding may be left out, as the reference libraries accept it).

``webhook-timestamp`` is taken as the specification states it, integer Unix seconds: ASCII digits
only, at most :data:`MAX_TIMESTAMP_DIGITS` of them. Python's ``int()`` would also take ``1_700_000_000``,
a sign, or digits of other scripts, none of which a conforming sender produces; and an integer of
hundreds of digits cannot be compared with the clock.

Verification compares in constant time and refuses timestamps more than
:data:`DEFAULT_TOLERANCE_SECONDS` away from the clock, which bounds how long a captured request
could be replayed; the ledger's unique external ID stops replays inside that window.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

#: How far a webhook's timestamp may be from our clock, either way.
DEFAULT_TOLERANCE_SECONDS = 5 * 60

#: Longest webhook ID we accept (it becomes a ledger key).
MAX_ID_LENGTH = 256

#: Most digits of ``webhook-timestamp``: Unix seconds fit in 11 until the year 5138.
MAX_TIMESTAMP_DIGITS = 12

_SECRET_PREFIX = "whsec_"
_VERSION = "v1"
_TIMESTAMP = re.compile(rf"[0-9]{{1,{MAX_TIMESTAMP_DIGITS}}}", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/]*", re.ASCII)


class WebhookVerificationError(ValueError):
    """A webhook's signature headers are missing, malformed, stale or do not match.

    Attributes:
        reason: A short machine-readable code (``missing_headers``, ``bad_timestamp``,
            ``stale_timestamp``, ``bad_signature``, ``bad_id``), used for metrics.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class WebhookSecretError(ValueError):
    """``WEBHOOK_SECRET`` cannot be used (empty, or ``whsec_`` followed by invalid base64)."""


@dataclass(frozen=True)
class VerifiedWebhook:
    """Headers of a webhook whose signature matched.

    Attributes:
        webhook_id: The sender's event ID (our external ID for the job).
        timestamp: When the sender signed it (Unix seconds).
    """

    webhook_id: str
    timestamp: int


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``WEBHOOK_SECRET`` stands for.

    Args:
        secret: Raw text, or ``whsec_<base64>`` as Standard Webhooks libraries generate it.

    Returns:
        The key bytes.

    Raises:
        WebhookSecretError: the secret is empty, or its ``whsec_`` part is not valid base64.
    """
    if not secret:
        raise WebhookSecretError("WEBHOOK_SECRET is empty: set it to a long random string")
    if secret.startswith(_SECRET_PREFIX):
        return _whsec_key(secret[len(_SECRET_PREFIX) :])
    return secret.encode("utf-8")


def _whsec_key(encoded: str) -> bytes:
    """Decode the base64 after ``whsec_``, with or without its ``=`` padding."""
    bare = encoded.rstrip("=")
    if not bare:
        raise WebhookSecretError("WEBHOOK_SECRET is whsec_ with nothing after it")
    if not _BASE64.fullmatch(bare) or len(bare) % 4 == 1:
        raise WebhookSecretError(
            "WEBHOOK_SECRET starts with whsec_ but the rest is not valid base64: "
            "paste the secret exactly as generated, or use a secret without the whsec_ prefix"
        )
    try:
        return base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
    except (binascii.Error, ValueError):  # unreachable after the checks above; kept as a guard
        raise WebhookSecretError(
            "WEBHOOK_SECRET starts with whsec_ but the rest is not valid base64"
        ) from None


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`` (no ``v1,`` prefix).

    Args:
        key: The HMAC key (see :func:`secret_key`).
        webhook_id: The ``webhook-id`` header.
        timestamp: The ``webhook-timestamp`` header, Unix seconds.
        body: The exact request body bytes.

    Returns:
        The base64 signature.
    """
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii")


def sign_headers(
    secret: str | bytes, webhook_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for sending ``body``.

    Args:
        secret: ``WEBHOOK_SECRET`` text (or key bytes already decoded).
        webhook_id: A unique event ID.
        body: The exact body that will be sent.
        timestamp: Unix seconds to sign with (default: now).

    Returns:
        ``{"webhook-id": ..., "webhook-timestamp": ..., "webhook-signature": "v1,..."}``.

    Raises:
        WebhookSecretError: the secret is unusable.
    """
    key = secret if isinstance(secret, bytes) else secret_key(secret)
    moment = int(time.time()) if timestamp is None else int(timestamp)
    return {
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(moment),
        SIGNATURE_HEADER: f"{_VERSION},{signature(key, webhook_id, moment, body)}",
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # Plain dicts are case-sensitive; HTTP header names are not.
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


def _parse_timestamp(raw: str) -> int:
    """``webhook-timestamp`` as an integer: ASCII digits only (surrounding spaces ignored).

    Raises:
        WebhookVerificationError: ``bad_timestamp``, quoting at most 40 characters of the header.
    """
    digits = raw.strip(" \t")
    if not _TIMESTAMP.fullmatch(digits):
        raise WebhookVerificationError(
            "bad_timestamp",
            f"webhook-timestamp {raw[:40]!r}{'...' if len(raw) > 40 else ''} is not Unix seconds: send "
            f"the integer number of seconds since 1970 as ASCII digits (at most {MAX_TIMESTAMP_DIGITS})",
        )
    return int(digits)


def verify(
    keys: bytes | list[bytes],
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> VerifiedWebhook:
    """Check a webhook's Standard Webhooks signature.

    Args:
        keys: The HMAC key, or several (accepted while a secret is rotated on our side).
        headers: The request headers (any mapping; names are matched case-insensitively).
        body: The exact request body bytes.
        tolerance_seconds: Largest accepted distance between the timestamp and ``now``.
        now: The current Unix time (default: the clock); for tests.

    Returns:
        The webhook ID and timestamp.

    Raises:
        WebhookVerificationError: a header is missing or malformed, the timestamp is outside the
            tolerance, or no signature matches any key. The message says which, never the secret.
    """
    webhook_id = _header(headers, ID_HEADER)
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    raw_signatures = _header(headers, SIGNATURE_HEADER)
    missing = [
        name
        for name, value in (
            (ID_HEADER, webhook_id),
            (TIMESTAMP_HEADER, raw_timestamp),
            (SIGNATURE_HEADER, raw_signatures),
        )
        if not value
    ]
    if missing or webhook_id is None or raw_timestamp is None or raw_signatures is None:
        raise WebhookVerificationError(
            "missing_headers",
            f"missing header(s) {', '.join(missing)}: sign the request as Standard Webhooks "
            '(webhook-id, webhook-timestamp, webhook-signature: "v1,<base64 HMAC-SHA256>")',
        )
    if len(webhook_id) > MAX_ID_LENGTH or not webhook_id.isprintable():
        raise WebhookVerificationError(
            "bad_id", f"webhook-id must be printable text of at most {MAX_ID_LENGTH} characters"
        )
    timestamp = _parse_timestamp(raw_timestamp)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookVerificationError(
            "stale_timestamp",
            f"webhook-timestamp {timestamp} is {abs(current - timestamp):.0f} s away from the server clock "
            f"(tolerance {tolerance_seconds} s): sign with the current time and check the sender's clock",
        )
    candidates = [keys] if isinstance(keys, bytes) else list(keys)
    expected = [signature(key, webhook_id, timestamp, body).encode("ascii") for key in candidates]
    matched = False
    for item in raw_signatures.split(" "):
        version, _, value = item.partition(",")
        if version != _VERSION or not value:
            continue
        for wanted in expected:
            # Check every pair (no early exit on a match) so timing says nothing about which key matched.
            matched |= hmac.compare_digest(value.encode("ascii", "replace"), wanted)
    if not matched:
        raise WebhookVerificationError(
            "bad_signature",
            "webhook-signature does not match: sign base64(HMAC-SHA256(secret, "
            '"{webhook-id}.{webhook-timestamp}.{body}")) over the exact body bytes, sent as "v1,<signature>"',
        )
    return VerifiedWebhook(webhook_id=webhook_id, timestamp=timestamp)

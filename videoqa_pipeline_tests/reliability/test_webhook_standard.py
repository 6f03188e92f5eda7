"""Our Standard Webhooks signatures agree with the reference libraries' published test vectors.

The vectors below are the ones the reference implementations (github.com/standard-webhooks,
``libraries/python/tests``, ``libraries/rust``, ``libraries/javascript``) test themselves with:
the same secret, message ID, timestamp and body must give the same signature here. Where the
reference libraries accept more than the specification says, we follow the specification:
``webhook-timestamp`` is "integer unix timestamp (seconds since epoch)", so only ASCII digits are
taken (no ``_`` separators, sign, spaces inside or non-ASCII digits, all of which Python's
``int()`` would accept), and a ``whsec_`` secret may come without its base64 padding, as the
reference library accepts it.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from videoqa_pipeline.service.app import create_app
from videoqa_pipeline.service.webhooks import (
    WebhookSecretError,
    WebhookVerificationError,
    secret_key,
    sign_headers,
    signature,
    verify,
)
from videoqa_pipeline.settings import Settings

# (secret, webhook-id, timestamp, body, expected "v1,..." signature), from the reference tests.
PUBLISHED_VECTORS = [
    (
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ),
    (
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1649367553,
        b'{"email":"test@example.com","username":"test_user"}',
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    ),
]

#: A signature the reference tests use as "valid base64, wrong value".
WRONG_SIGNATURE = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="


@pytest.mark.parametrize(("secret", "msg_id", "timestamp", "body", "expected"), PUBLISHED_VECTORS)
def test_published_vectors_sign_and_verify(
    secret: str, msg_id: str, timestamp: int, body: bytes, expected: str
) -> None:
    key = secret_key(secret)
    assert f"v1,{signature(key, msg_id, timestamp, body)}" == expected
    assert sign_headers(secret, msg_id, body, timestamp=timestamp)["webhook-signature"] == expected
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": expected}
    verified = verify(key, headers, body, now=timestamp + 10)
    assert (verified.webhook_id, verified.timestamp) == (msg_id, timestamp)
    # Several signatures, other versions among them: any v1 match is enough (reference "multi sig").
    several = " ".join([WRONG_SIGNATURE, WRONG_SIGNATURE.replace("v1,", "v2,"), expected, WRONG_SIGNATURE])
    assert verify(key, {**headers, "webhook-signature": several}, body, now=timestamp).webhook_id == msg_id
    with pytest.raises(WebhookVerificationError) as refused:
        verify(key, {**headers, "webhook-signature": WRONG_SIGNATURE}, body, now=timestamp)
    assert refused.value.reason == "bad_signature"


@pytest.mark.parametrize(
    ("tail", "padded"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),  # needs no padding
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS="),  # needs one "="
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr=="),  # needs two
    ],
)
def test_whsec_secrets_without_padding_are_accepted(tail: str, padded: str, tmp_path: Path) -> None:
    key = secret_key(f"whsec_{tail}")
    assert key == base64.b64decode(padded)
    assert secret_key(f"whsec_{padded}") == key
    # The reference library's own "unpadded secret" check: sign with the padded form, verify with the bare one.
    body = b'{"test": 2432232314}'
    now = int(time.time())
    headers = sign_headers(base64.b64decode(padded), "msg_p5jXN8AQM9LWM0D4loKWxJek", body, timestamp=now)
    assert verify(key, headers, body).webhook_id == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    # And the service starts with it.
    settings = Settings.from_env(
        {"VIDEOQA_HOME": str(tmp_path), "JOB_SOURCE_TYPE": "webhook", "WEBHOOK_SECRET": f"whsec_{tail}"}
    )
    assert create_app(settings, database=None) is not None


@pytest.mark.parametrize("secret", ["whsec_", "whsec_====", "whsec_abc$def", "whsec_A", "whsec_QUJD-_"])
def test_whsec_secrets_that_are_not_base64_are_refused_with_a_reason(secret: str) -> None:
    with pytest.raises(WebhookSecretError, match="WEBHOOK_SECRET"):
        secret_key(secret)


def _variants(now: int) -> dict[str, str]:
    digits = str(now)
    arabic_indic = digits.translate({ord("0") + i: 0x0660 + i for i in range(10)})
    fullwidth = digits.translate({ord("0") + i: 0xFF10 + i for i in range(10)})
    return {
        "underscores": f"{digits[:1]}_{digits[1:4]}_{digits[4:7]}_{digits[7:]}",
        "plus sign": f"+{digits}",
        "Arabic-Indic digits": arabic_indic,
        "fullwidth digits": fullwidth,
        "fraction": f"{digits}.0",
        "exponent": f"{now / 1e9}e9",
        "inner space": f"{digits[:5]} {digits[5:]}",
        "hundreds of digits": "9" * 400,
        "negative": f"-{digits}",
    }


@pytest.mark.parametrize("variant", list(_variants(0)))
def test_timestamps_are_ascii_digits_only(variant: str) -> None:
    """Each variant carries a signature that is valid for the timestamp it spells."""
    now = int(time.time())
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    headers = sign_headers(key, "msg_1", body, timestamp=now)
    headers["webhook-timestamp"] = _variants(now)[variant]
    with pytest.raises(WebhookVerificationError) as refused:
        verify(key, headers, body, now=now)
    assert refused.value.reason == "bad_timestamp", (variant, str(refused.value))
    assert "webhook-timestamp" in str(refused.value) and len(str(refused.value)) < 400


def test_leading_zeros_and_surrounding_space_are_the_same_integer() -> None:
    """As in the reference libraries, the signed timestamp is the integer, not its spelling."""
    now = int(time.time())
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b"{}"
    headers = sign_headers(key, "msg_2", body, timestamp=now)
    for spelling in (f"0{now}", f" {now} "):
        assert verify(key, {**headers, "webhook-timestamp": spelling}, body, now=now).timestamp == now

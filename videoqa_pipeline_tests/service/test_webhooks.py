"""Standard Webhooks signing and verification, without any server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from videoqa_pipeline.service.webhooks import (
    WebhookSecretError,
    WebhookVerificationError,
    secret_key,
    sign_headers,
    verify,
)

BODY = b'{"source_uri": "s3://bucket/talk.mp4"}'


def test_signature_matches_the_specification_computed_by_hand() -> None:
    headers = sign_headers("s3cret", "msg_1", BODY, timestamp=1_700_000_000)
    expected = base64.b64encode(
        hmac.new(b"s3cret", b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    ).decode()
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": f"v1,{expected}",
    }
    verified = verify(secret_key("s3cret"), headers, BODY, now=1_700_000_000)
    assert (verified.webhook_id, verified.timestamp) == ("msg_1", 1_700_000_000)


def test_whsec_secrets_are_base64_decoded() -> None:
    raw = bytes(range(32))
    secret = "whsec_" + base64.b64encode(raw).decode()
    assert secret_key(secret) == raw
    headers = sign_headers(secret, "msg_2", BODY)
    verify(raw, headers, BODY)
    with pytest.raises(WebhookVerificationError):
        verify(secret.encode(), headers, BODY)  # the prefixed text itself is not the key
    with pytest.raises(WebhookSecretError, match="base64"):
        secret_key("whsec_***not base64***")


def test_any_of_several_signatures_and_keys_may_match_during_rotation() -> None:
    old = sign_headers("old-secret", "msg_3", BODY)
    new = sign_headers("new-secret", "msg_3", BODY, timestamp=int(old["webhook-timestamp"]))
    both = dict(new, **{"webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"})
    assert verify(b"new-secret", both, BODY).webhook_id == "msg_3"
    assert verify([b"newer", b"old-secret"], old, BODY).webhook_id == "msg_3"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: (h, b + b" "), "bad_signature"),
        (lambda h, b: ({**h, "webhook-id": "other"}, b), "bad_signature"),
        (
            lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, b),
            "bad_signature",
        ),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-timestamp"}, b), "missing_headers"),
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "bad_timestamp"),
        (lambda h, b: ({**h, "webhook-timestamp": str(int(time.time()) - 301)}, b), "stale_timestamp"),
        (lambda h, b: ({**h, "webhook-timestamp": str(int(time.time()) + 301)}, b), "stale_timestamp"),
        (lambda h, b: ({**h, "webhook-id": "x" * 300}, b), "bad_id"),
    ],
)
def test_tampering_and_staleness_are_refused_with_a_reason(change, reason: str) -> None:  # type: ignore[no-untyped-def]
    headers, body = change(sign_headers("s3cret", "msg_4", BODY), BODY)
    with pytest.raises(WebhookVerificationError) as caught:
        verify(b"s3cret", headers, body)
    assert caught.value.reason == reason
    assert "s3cret" not in str(caught.value)


def test_header_names_are_case_insensitive() -> None:
    headers = {name.upper(): value for name, value in sign_headers("k", "msg_5", BODY).items()}
    assert verify(b"k", headers, BODY).webhook_id == "msg_5"

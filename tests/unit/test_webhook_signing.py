"""Standard Webhooks signing: our `sign`/`verify` against the published test vector and
against the `standardwebhooks` package, in both directions."""

from __future__ import annotations

import base64
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks import WebhookVerificationError as LibraryError

import gengate.webhooks
from gengate.services.accounts import new_webhook_secret
from gengate.webhooks import WebhookVerificationError, sign, verify
from gengate.webhooks.signing import signature_header

# The example of the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NOW = 1_800_000_000


def headers_for(body: bytes, secrets: list[str], *, at: int = NOW) -> dict[str, str]:
    return {
        "webhook-id": "msg_0123",
        "webhook-timestamp": str(at),
        "webhook-signature": signature_header(
            body, webhook_id="msg_0123", timestamp=at, secrets=secrets
        ),
    }


def test_the_specification_example_signs_as_published() -> None:
    signed = sign(SPEC_BODY, webhook_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, secret=SPEC_SECRET)
    assert signed == SPEC_SIGNATURE
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify(SPEC_BODY, headers, SPEC_SECRET, now=SPEC_TIMESTAMP) == {"test": 2432232314}


def test_the_library_verifies_what_we_sign() -> None:
    secret = new_webhook_secret()
    body = b'{"type":"job.succeeded","data":{"id":"job_1"}}'
    now = int(datetime.now(UTC).timestamp())
    payload = Webhook(secret).verify(body, headers_for(body, [secret], at=now))
    assert payload["type"] == "job.succeeded"
    with pytest.raises(LibraryError):
        Webhook(secret).verify(
            body.replace(b"job_1", b"job_2"), headers_for(body, [secret], at=now)
        )


def test_we_verify_what_the_library_signs() -> None:
    secret = new_webhook_secret()
    body = '{"type":"job.failed"}'
    signature = Webhook(secret).sign("msg_9", datetime.fromtimestamp(NOW, UTC), body)
    headers = {"Webhook-Id": "msg_9", "Webhook-Timestamp": str(NOW), "Webhook-Signature": signature}
    assert verify(body.encode(), headers, secret, now=NOW) == {"type": "job.failed"}


def test_secrets_are_32_random_bytes_in_standard_base64() -> None:
    secret = new_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert new_webhook_secret() != secret


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = new_webhook_secret(), new_webhook_secret()
    body = b'{"n":1}'
    headers = headers_for(body, [new, old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(part.startswith("v1,") for part in headers["webhook-signature"].split(" "))
    for secret in (old, new, [old, new]):
        assert verify(body, headers, secret, now=NOW) == {"n": 1}
    with pytest.raises(WebhookVerificationError):
        verify(body, headers, new_webhook_secret(), now=NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-id": "msg_other"}, "No signature matches"),
        ({"webhook-timestamp": str(NOW + 1)}, "No signature matches"),
        ({"webhook-timestamp": "soon"}, "not a number"),
        ({"webhook-signature": "v2,AAAA"}, "No signature matches"),
        ({"webhook-signature": "v1,not base64!"}, "No signature matches"),
    ],
)
def test_a_changed_header_fails(change: dict[str, str], message: str) -> None:
    secret = new_webhook_secret()
    body = b"{}"
    headers = headers_for(body, [secret]) | change
    with pytest.raises(WebhookVerificationError, match=message):
        verify(body, headers, secret, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_fails(missing: str) -> None:
    secret = new_webhook_secret()
    headers = headers_for(b"{}", [secret])
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=missing):
        verify(b"{}", headers, secret, now=NOW)


def test_an_old_or_future_timestamp_fails_outside_the_tolerance() -> None:
    secret = new_webhook_secret()
    headers = headers_for(b"{}", [secret])
    assert verify(b"{}", headers, secret, now=NOW + 299) == {}
    for now in (NOW + 301, NOW - 301):
        with pytest.raises(WebhookVerificationError, match="too far"):
            verify(b"{}", headers, secret, now=now)
    assert verify(b"{}", headers, secret, now=NOW + 3000, tolerance_s=3600) == {}


def test_a_body_that_is_not_json_fails_even_when_signed() -> None:
    secret = new_webhook_secret()
    with pytest.raises(WebhookVerificationError, match="not JSON"):
        verify(b"plain", headers_for(b"plain", [secret]), secret, now=NOW)


def test_secrets_may_come_without_prefix_or_as_bytes() -> None:
    raw = bytes(range(32))
    prefixed = "whsec_" + base64.b64encode(raw).decode()
    bare = base64.b64encode(raw).decode()
    signatures = {
        sign(b"x", webhook_id="m", timestamp=1, secret=key) for key in (prefixed, bare, raw)
    }
    assert len(signatures) == 1
    with pytest.raises(WebhookVerificationError, match="empty"):
        sign(b"x", webhook_id="m", timestamp=1, secret="whsec_")
    with pytest.raises(ValueError):
        signature_header(b"x", webhook_id="m", timestamp=1, secrets=[])


def test_the_package_exports_exactly_the_receiver_api() -> None:
    assert set(gengate.webhooks.__all__) == {"verify", "sign", "WebhookVerificationError"}


def test_the_package_imports_nothing_from_the_server_side() -> None:
    code = (
        "import sys, gengate.webhooks; "
        "server = [m for m in sys.modules if m.startswith(('gengate.', 'sqlalchemy', 'fastapi'))"
        " and not m.startswith('gengate.webhooks')]; print(server)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"

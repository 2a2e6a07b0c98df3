"""Standard Webhooks signatures: sign a payload, verify one. Pure: no I/O, no clock
unless the caller leaves `now` out, and nothing from the server side of gengate.

A signature is `v1,` + the standard base64 of HMAC-SHA256 over
`{webhook-id}.{webhook-timestamp}.{body}`, keyed with the secret's bytes (a secret is
`whsec_` + the standard base64 of those bytes). The `webhook-signature` header holds one
or more signatures separated by spaces, so a sender can sign with an old and a new
secret while receivers switch over.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
#: How far a webhook's timestamp may be from the receiver's clock (replay protection).
DEFAULT_TOLERANCE_S = 300


class WebhookVerificationError(Exception):
    """The webhook's signature, headers or timestamp do not check out."""


def secret_bytes(secret: str | bytes) -> bytes:
    """The key behind `whsec_<base64>` (or bare base64, or raw bytes)."""
    if isinstance(secret, bytes):
        key = secret
    else:
        text = secret.removeprefix(SECRET_PREFIX)
        try:
            # Padding is added for secrets written without it; b64decode ignores extra '='.
            key = base64.b64decode(text + "==", validate=False)
        except (binascii.Error, ValueError) as exc:
            raise WebhookVerificationError("The webhook secret is not valid base64.") from exc
    if not key:
        raise WebhookVerificationError("The webhook secret is empty.")
    return key


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def sign(body: bytes | str, *, webhook_id: str, timestamp: int, secret: str | bytes) -> str:
    """One signature, `v1,<base64>`, of `body` sent as `webhook_id` at `timestamp`."""
    signed = b"%s.%d.%s" % (webhook_id.encode(), timestamp, _as_bytes(body))
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_header(
    body: bytes | str, *, webhook_id: str, timestamp: int, secrets: Sequence[str | bytes]
) -> str:
    """The `webhook-signature` header value: one signature per secret, space-separated."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    return " ".join(
        sign(body, webhook_id=webhook_id, timestamp=timestamp, secret=secret) for secret in secrets
    )


def _digest(signature: str) -> bytes:
    """The HMAC bytes of `v1,<base64>` (compared as bytes: base64 has several spellings)."""
    try:
        return base64.b64decode(signature.partition(",")[2], validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("A signature is not valid base64.") from None


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"The {name} header is missing.")


def verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes | Sequence[str | bytes],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> Any:
    """Check a received webhook and return its parsed JSON payload.

    `body` must be the raw request body, byte for byte. `secret` may be one secret or
    several (while a rotation is under way). Raises `WebhookVerificationError` when a
    header is missing, the timestamp is more than `tolerance_s` away from `now`, or no
    `v1` signature in the header matches.
    """
    webhook_id = _header(headers, "webhook-id")
    timestamp_text = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise WebhookVerificationError("The webhook-timestamp header is not a number.") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError("The webhook-timestamp is too far from the current time.")
    candidates = [secret] if isinstance(secret, str | bytes) else list(secret)
    expected = [
        _digest(sign(body, webhook_id=webhook_id, timestamp=timestamp, secret=key))
        for key in candidates
    ]
    for presented in signatures.split():
        version, _, _ = presented.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            digest = _digest(presented)
        except WebhookVerificationError:
            continue
        if any(hmac.compare_digest(digest, wanted) for wanted in expected):
            try:
                return json.loads(_as_bytes(body))
            except ValueError as exc:
                raise WebhookVerificationError("The webhook body is not JSON.") from exc
    raise WebhookVerificationError("No signature matches.")

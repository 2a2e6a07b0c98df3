"""Webhooks: Standard Webhooks signing and verification.

`verify(body, headers, secret)` is what a receiver needs; `sign` is what gengate sends
with. This package's top level imports nothing from the server side of gengate, so an
application can verify webhooks with only the SDK installed. The delivery loop lives in
`gengate.webhooks.delivery` and is imported by the server only.
"""

from __future__ import annotations

from gengate.webhooks.signing import WebhookVerificationError, sign, verify

__all__ = ["WebhookVerificationError", "sign", "verify"]

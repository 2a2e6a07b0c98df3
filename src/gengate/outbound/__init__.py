"""Outbound HTTP policy: which addresses gengate may call (webhooks, input media)."""

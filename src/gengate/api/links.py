"""Link building for a request: absolute URLs from GENGATE_PUBLIC_URL or the request."""

from __future__ import annotations

from fastapi import Request

from gengate.services.gateway import Gateway
from gengate.services.records import LinkBuilder


def links_for(gw: Gateway, request: Request) -> LinkBuilder:
    base = gw.settings.public_url or str(request.base_url)
    return LinkBuilder.create(gw.signer, base, now=gw.clock(), lifetime_s=gw.settings.link_ttl_s)

"""The caller's account and its ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from gengate.api.deps import CallerDep
from gengate.api.responses import json_response
from gengate.api.schemas import AUTHED, Account, LedgerPage, documented
from gengate.domain.cursors import decode_cursor, encode_cursor
from gengate.domain.ids import parse_id
from gengate.services import accounts as account_service

router = APIRouter(tags=["account"])


@router.get(
    "/v1/account",
    summary="The caller's account",
    response_model=None,
    responses={200: {"model": Account}, **documented(*AUTHED)},
)
async def get_account(caller: CallerDep) -> Response:
    """Balance, reservations and what is available (all in micro-dollars)."""
    gw, principal = caller.gw, caller.principal
    return json_response(await account_service.get_account(gw.db, principal.account_id))


@router.get(
    "/v1/account/ledger",
    summary="The account's ledger",
    response_model=None,
    responses={200: {"model": LedgerPage}, **documented(*AUTHED)},
)
async def get_ledger(
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Ledger entries (reserve, release, charge, credit), newest first."""
    gw, principal = caller.gw, caller.principal
    before = decode_cursor(cursor) if cursor else None
    entries, has_more = await account_service.ledger_page(
        gw.db, principal.account_id, before=before, limit=limit
    )
    last_id = parse_id("led", entries[-1]["id"]) if entries and has_more else None
    return json_response(
        {
            "entries": entries,
            "has_more": has_more,
            "cursor": encode_cursor(last_id) if last_id else None,
        }
    )

"""The caller's account and its ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from gengate.api.deps import GatewayDep, PrincipalDep
from gengate.api.responses import json_response
from gengate.api.schemas import AUTHED, Account, LedgerPage, documented
from gengate.domain.ids import format_id
from gengate.services import accounts as account_service
from gengate.services.jobs import decode_cursor, encode_cursor
from gengate.services.records import iso
from gengate.store import ledger

router = APIRouter(tags=["account"])


@router.get(
    "/v1/account",
    summary="The caller's account",
    response_model=None,
    responses={200: {"model": Account}, **documented(*AUTHED)},
)
async def get_account(gw: GatewayDep, principal: PrincipalDep) -> Response:
    """Balance, reservations and what is available (all in micro-dollars)."""
    return json_response(await account_service.get_account(gw.db, principal.account_id))


@router.get(
    "/v1/account/ledger",
    summary="The account's ledger",
    response_model=None,
    responses={200: {"model": LedgerPage}, **documented(*AUTHED)},
)
async def get_ledger(
    gw: GatewayDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """Ledger entries (reserve, release, charge, credit), newest first."""
    before = decode_cursor(cursor) if cursor else None
    async with gw.db.read() as conn:
        rows = list(
            await ledger.list_entries(
                conn, account_id=principal.account_id, before=before, limit=limit + 1
            )
        )
    has_more = len(rows) > limit
    rows = rows[:limit]
    return json_response(
        {
            "entries": [
                {
                    "id": format_id("led", row.id),
                    "kind": row.kind,
                    "amount_micro": row.amount_micro,
                    "balance_after_micro": row.balance_after_micro,
                    "reserved_after_micro": row.reserved_after_micro,
                    "job_id": format_id("job", row.job_id) if row.job_id else None,
                    "note": row.note,
                    "created_at": iso(row.created_at),
                }
                for row in rows
            ],
            "has_more": has_more,
            "cursor": encode_cursor(rows[-1].id) if has_more and rows else None,
        }
    )

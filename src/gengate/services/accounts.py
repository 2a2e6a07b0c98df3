"""Accounts, API keys and credit: creation, authentication, top-ups."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from gengate.domain.errors import InvalidRequest, NotFound, Unauthorized
from gengate.domain.ids import format_id, new_uuid, parse_id, require_id
from gengate.domain.money import credits_to_micro, micro_to_credits
from gengate.services.records import iso
from gengate.store import accounts as account_store
from gengate.store import ledger
from gengate.store.database import Database

API_KEY_PREFIX = "gg_live_"


def hash_api_key(raw_key: str) -> str:
    """SHA-256: keys are 32 random bytes, so a fast hash looked up by index is safe."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """`whsec_` + standard base64 of 32 random bytes (the Standard Webhooks form)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the account and the key it used."""

    account_id: uuid.UUID
    key_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class CreatedAccount:
    account_id: str
    key_id: str
    api_key: str
    webhook_secret: str


@dataclass(frozen=True, slots=True)
class CreatedKey:
    key_id: str
    api_key: str


async def create_account(
    db: Database, name: str, credits: Decimal, now: datetime
) -> CreatedAccount:
    account_id, key_id = new_uuid(), new_uuid()
    api_key, webhook_secret = new_api_key(), new_webhook_secret()
    async with db.transaction() as conn:
        await account_store.insert_account(
            conn, account_id=account_id, name=name, webhook_secret=webhook_secret, now=now
        )
        await account_store.insert_api_key(
            conn,
            key_id=key_id,
            account_id=account_id,
            key_hash=hash_api_key(api_key),
            prefix=api_key[: len(API_KEY_PREFIX) + 4],
            now=now,
        )
        if credits:
            await ledger.credit(
                conn,
                account_id=account_id,
                amount_micro=credits_to_micro(credits),
                now=now,
                note="initial credit",
            )
    return CreatedAccount(
        format_id("acct", account_id), format_id("key", key_id), api_key, webhook_secret
    )


async def create_key(db: Database, account_id: str, now: datetime) -> CreatedKey:
    account_uuid = require_id("acct", account_id, "account")
    key_id, api_key = new_uuid(), new_api_key()
    async with db.transaction() as conn:
        if await account_store.get_account(conn, account_uuid) is None:
            raise NotFound(f"No account {account_id!r}.")
        await account_store.insert_api_key(
            conn,
            key_id=key_id,
            account_id=account_uuid,
            key_hash=hash_api_key(api_key),
            prefix=api_key[: len(API_KEY_PREFIX) + 4],
            now=now,
        )
    return CreatedKey(format_id("key", key_id), api_key)


async def list_keys(db: Database, account_id: str) -> list[dict[str, Any]]:
    account_uuid = require_id("acct", account_id, "account")
    async with db.read() as conn:
        if await account_store.get_account(conn, account_uuid) is None:
            raise NotFound(f"No account {account_id!r}.")
        rows = await account_store.list_keys(conn, account_uuid)
    return [
        {
            "key_id": format_id("key", row.id),
            "prefix": row.prefix,
            "created_at": iso(row.created_at),
            "revoked": row.revoked_at is not None,
        }
        for row in rows
    ]


async def revoke_key(db: Database, key_id: str, now: datetime) -> None:
    key_uuid = parse_id("key", key_id)
    async with db.transaction() as conn:
        if key_uuid is None or not await account_store.revoke_key(conn, key_uuid, now):
            raise NotFound(f"No key {key_id!r}.")


async def credit_account(
    db: Database, account_id: str, credits: Decimal, now: datetime
) -> dict[str, Any]:
    account_uuid = require_id("acct", account_id, "account")
    async with db.transaction() as conn:
        if await account_store.get_account(conn, account_uuid) is None:
            raise NotFound(f"No account {account_id!r}.")
        row = await ledger.credit(
            conn,
            account_id=account_uuid,
            amount_micro=credits_to_micro(credits) if credits >= 0 else -credits_to_micro(-credits),
            now=now,
            note="operator credit",
        )
    if row is None:
        raise InvalidRequest("A debit cannot take the balance below what is reserved.")
    return _balances(account_id, row.balance_micro, row.reserved_micro)


async def rotate_webhook_secret(
    db: Database, account_id: str, now: datetime, *, overlap_s: float
) -> dict[str, Any]:
    """Give the account a new webhook secret. Webhooks are signed with the old one too
    (a second `v1,` signature) for `overlap_s`, so receivers can switch without loss."""
    account_uuid = require_id("acct", account_id, "account")
    secret = new_webhook_secret()
    previous_expires_at = now + timedelta(seconds=overlap_s)
    async with db.transaction() as conn:
        row = await account_store.rotate_webhook_secret(
            conn, account_uuid, new_secret=secret, previous_expires_at=previous_expires_at
        )
    if row is None:
        raise NotFound(f"No account {account_id!r}.")
    return {
        "account_id": format_id("acct", account_uuid),
        "webhook_secret": secret,
        "previous_secret_expires_at": iso(previous_expires_at),
    }


def _balances(account_id: str, balance: int, reserved: int) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "balance_micro": balance,
        "reserved_micro": reserved,
        "available_micro": balance - reserved,
        "credits": micro_to_credits(balance),
    }


def account_view(row: Any) -> dict[str, Any]:
    """`GET /v1/account`."""
    return {
        "object": "account",
        "id": format_id("acct", row.id),
        "name": row.name,
        "balance_micro": row.balance_micro,
        "reserved_micro": row.reserved_micro,
        "available_micro": row.balance_micro - row.reserved_micro,
        "credits": micro_to_credits(row.balance_micro),
    }


async def list_accounts(db: Database) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = await account_store.list_accounts(conn)
    return [account_view(row) | {"created_at": iso(row.created_at)} for row in rows]


async def get_account(db: Database, account_id: uuid.UUID) -> dict[str, Any]:
    async with db.read() as conn:
        row = await account_store.get_account(conn, account_id)
    if row is None:
        raise NotFound("No such account.")
    return account_view(row)


async def authenticate(db: Database, raw_key: str | None) -> Principal:
    if not raw_key:
        raise Unauthorized("Send your API key as 'Authorization: Bearer <key>' or 'X-API-Key'.")
    async with db.read() as conn:
        row = await account_store.find_key_by_hash(conn, hash_api_key(raw_key))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("The API key is unknown or revoked.")
    return Principal(account_id=row.account_id, key_id=row.id)


async def has_accounts(db: Database) -> bool:
    async with db.read() as conn:
        return await account_store.count_accounts(conn) > 0


async def ledger_page(
    db: Database, account_id: uuid.UUID, *, before: uuid.UUID | None, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Ledger entries, newest first: one page and whether more follow."""
    async with db.read() as conn:
        rows = list(
            await ledger.list_entries(conn, account_id=account_id, before=before, limit=limit + 1)
        )
    entries = [
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
        for row in rows[:limit]
    ]
    return entries, len(rows) > limit

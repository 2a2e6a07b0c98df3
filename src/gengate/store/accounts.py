"""Accounts and API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, insert, select, update

from gengate.store.database import DbConnection
from gengate.store.schema import accounts, api_keys
from gengate.store.types import AnyRow


async def insert_account(
    conn: DbConnection, *, account_id: uuid.UUID, name: str, webhook_secret: str, now: datetime
) -> None:
    await conn.execute(
        insert(accounts).values(
            id=account_id,
            name=name,
            balance_micro=0,
            reserved_micro=0,
            webhook_secret=webhook_secret,
            created_at=now,
        )
    )


async def get_account(conn: DbConnection, account_id: uuid.UUID) -> AnyRow | None:
    result = await conn.execute(select(accounts).where(accounts.c.id == account_id))
    return result.first()


async def list_accounts(conn: DbConnection) -> Sequence[AnyRow]:
    result = await conn.execute(select(accounts).order_by(accounts.c.id))
    return result.all()


async def count_accounts(conn: DbConnection) -> int:
    result = await conn.execute(select(func.count()).select_from(accounts))
    return int(result.scalar_one())


async def insert_api_key(
    conn: DbConnection,
    *,
    key_id: uuid.UUID,
    account_id: uuid.UUID,
    key_hash: str,
    prefix: str,
    now: datetime,
) -> None:
    await conn.execute(
        insert(api_keys).values(
            id=key_id, account_id=account_id, key_hash=key_hash, prefix=prefix, created_at=now
        )
    )


_FIND_KEY = select(api_keys.c.id, api_keys.c.account_id, api_keys.c.revoked_at).where(
    api_keys.c.key_hash == bindparam("p_key_hash")
)


async def find_key_by_hash(conn: DbConnection, key_hash: str) -> AnyRow | None:
    """The key with this SHA-256 hash (by unique index), revoked or not."""
    return (await conn.execute(_FIND_KEY, {"p_key_hash": key_hash})).first()


async def list_keys(conn: DbConnection, account_id: uuid.UUID) -> Sequence[AnyRow]:
    result = await conn.execute(
        select(api_keys).where(api_keys.c.account_id == account_id).order_by(api_keys.c.id)
    )
    return result.all()


async def revoke_key(conn: DbConnection, key_id: uuid.UUID, now: datetime) -> bool:
    """Revoke a key; False when no such key exists. Revoking twice keeps the first time."""
    result = await conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id)
        .values(revoked_at=func.coalesce(api_keys.c.revoked_at, now))
        .returning(api_keys.c.id)
    )
    return result.first() is not None


async def rotate_webhook_secret(
    conn: DbConnection,
    account_id: uuid.UUID,
    *,
    new_secret: str,
    previous_expires_at: datetime,
) -> AnyRow | None:
    """Make `new_secret` current and keep the current one, as the previous secret, until
    `previous_expires_at`. None when no such account exists."""
    result = await conn.execute(
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(
            previous_webhook_secret=accounts.c.webhook_secret,
            previous_webhook_secret_expires_at=previous_expires_at,
            webhook_secret=new_secret,
        )
        .returning(*accounts.c)
    )
    return result.first()


_WEBHOOK_SECRETS = select(
    accounts.c.webhook_secret,
    accounts.c.previous_webhook_secret,
    accounts.c.previous_webhook_secret_expires_at,
).where(accounts.c.id == bindparam("p_account_id"))


async def webhook_secrets(conn: DbConnection, account_id: uuid.UUID, *, now: datetime) -> list[str]:
    """The secrets to sign an account's webhooks with: the current one first, then the
    previous one while its overlap window lasts."""
    row = (await conn.execute(_WEBHOOK_SECRETS, {"p_account_id": account_id})).first()
    if row is None:
        return []
    secrets = [row.webhook_secret]
    expires = row.previous_webhook_secret_expires_at
    if row.previous_webhook_secret is not None and expires is not None and expires > now:
        secrets.append(row.previous_webhook_secret)
    return secrets

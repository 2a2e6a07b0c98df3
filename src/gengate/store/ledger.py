"""The append-only ledger and the balances it moves.

Every change to an account's balance or reservations is one guarded UPDATE of the
account row plus one ledger entry, in the caller's transaction. The guards keep
`balance - reserved >= 0` at all times, so a balance never goes negative.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, bindparam, insert, select, update

from gengate.domain.ids import new_uuid
from gengate.store.database import DbConnection
from gengate.store.schema import accounts, ledger_entries
from gengate.store.types import AnyRow


class EntryKind(StrEnum):
    CREDIT = "credit"
    RESERVE = "reserve"
    RELEASE = "release"
    CHARGE = "charge"


_INSERT_ENTRY = insert(ledger_entries)
_AMOUNT = bindparam("p_amount", type_=BigInteger())
_RESERVE = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("p_account_id"),
        accounts.c.balance_micro - accounts.c.reserved_micro >= _AMOUNT,
    )
    .values(reserved_micro=accounts.c.reserved_micro + _AMOUNT)
    .returning(accounts.c.balance_micro, accounts.c.reserved_micro)
)
_SETTLE = (
    update(accounts)
    .where(accounts.c.id == bindparam("p_account_id"))
    .values(
        reserved_micro=accounts.c.reserved_micro - bindparam("p_release", type_=BigInteger()),
        balance_micro=accounts.c.balance_micro - bindparam("p_charge", type_=BigInteger()),
    )
    .returning(accounts.c.balance_micro, accounts.c.reserved_micro)
)


async def _append(
    conn: DbConnection,
    *,
    account_id: uuid.UUID,
    job_id: uuid.UUID | None,
    kind: EntryKind,
    amount_micro: int,
    balance_after: int,
    reserved_after: int,
    now: datetime,
    note: str | None = None,
) -> None:
    await conn.execute(
        _INSERT_ENTRY,
        {
            "id": new_uuid(),
            "account_id": account_id,
            "job_id": job_id,
            "kind": kind.value,
            "amount_micro": amount_micro,
            "balance_after_micro": balance_after,
            "reserved_after_micro": reserved_after,
            "note": note,
            "created_at": now,
        },
    )


async def reserve(
    conn: DbConnection,
    *,
    account_id: uuid.UUID,
    job_id: uuid.UUID,
    amount_micro: int,
    now: datetime,
) -> bool:
    """Reserve `amount_micro` for a job; False when the available balance is too low."""
    result = await conn.execute(_RESERVE, {"p_account_id": account_id, "p_amount": amount_micro})
    row = result.first()
    if row is None:
        return False
    await _append(
        conn,
        account_id=account_id,
        job_id=job_id,
        kind=EntryKind.RESERVE,
        amount_micro=amount_micro,
        balance_after=row.balance_micro,
        reserved_after=row.reserved_micro,
        now=now,
    )
    return True


async def release_and_charge(
    conn: DbConnection,
    *,
    account_id: uuid.UUID,
    job_id: uuid.UUID,
    release_micro: int,
    charge_micro: int,
    now: datetime,
) -> None:
    """Settle a job: drop its reservation and take its charge (≤ the reservation)."""
    if charge_micro > release_micro:
        raise ValueError("a charge cannot exceed the reservation it settles")
    result = await conn.execute(
        _SETTLE,
        {"p_account_id": account_id, "p_release": release_micro, "p_charge": charge_micro},
    )
    row = result.one()
    await _append(
        conn,
        account_id=account_id,
        job_id=job_id,
        kind=EntryKind.RELEASE,
        amount_micro=release_micro,
        balance_after=row.balance_micro + charge_micro,
        reserved_after=row.reserved_micro,
        now=now,
    )
    if charge_micro:
        await _append(
            conn,
            account_id=account_id,
            job_id=job_id,
            kind=EntryKind.CHARGE,
            amount_micro=charge_micro,
            balance_after=row.balance_micro,
            reserved_after=row.reserved_micro,
            now=now,
        )


async def credit(
    conn: DbConnection,
    *,
    account_id: uuid.UUID,
    amount_micro: int,
    now: datetime,
    note: str | None,
) -> AnyRow | None:
    """Add (or, when negative, remove) credit; None when the account is missing or a
    debit would take the balance below what is reserved."""
    result = await conn.execute(
        update(accounts)
        .where(
            accounts.c.id == account_id,
            accounts.c.balance_micro + amount_micro - accounts.c.reserved_micro >= 0,
        )
        .values(balance_micro=accounts.c.balance_micro + amount_micro)
        .returning(accounts.c.balance_micro, accounts.c.reserved_micro)
    )
    row = result.first()
    if row is None:
        return None
    await _append(
        conn,
        account_id=account_id,
        job_id=None,
        kind=EntryKind.CREDIT,
        amount_micro=amount_micro,
        balance_after=row.balance_micro,
        reserved_after=row.reserved_micro,
        now=now,
        note=note,
    )
    return row


async def list_entries(
    conn: DbConnection, *, account_id: uuid.UUID, before: uuid.UUID | None, limit: int
) -> Sequence[AnyRow]:
    """Newest first; `before` is the keyset cursor (the last id of the previous page)."""
    query = select(ledger_entries).where(ledger_entries.c.account_id == account_id)
    if before is not None:
        query = query.where(ledger_entries.c.id < before)
    result = await conn.execute(query.order_by(ledger_entries.c.id.desc()).limit(limit))
    return result.all()


async def settle_many(
    conn: DbConnection,
    settlements: Sequence[tuple[uuid.UUID, uuid.UUID, int, int]],
    *,
    now: datetime,
) -> None:
    """Settle many jobs at once: per account one guarded UPDATE with the totals, then
    every job's release and charge entries in one INSERT. Entries carry the balances
    as they were after each of them, in order. `settlements` holds
    (account_id, job_id, release_micro, charge_micro)."""
    by_account: dict[uuid.UUID, list[tuple[uuid.UUID, int, int]]] = {}
    for account_id, job_id, release, charge in settlements:
        if charge > release:
            raise ValueError("a charge cannot exceed the reservation it settles")
        by_account.setdefault(account_id, []).append((job_id, release, charge))
    entries: list[dict[str, Any]] = []
    for account_id, jobs_settled in by_account.items():
        result = await conn.execute(
            _SETTLE,
            {
                "p_account_id": account_id,
                "p_release": sum(release for _, release, _ in jobs_settled),
                "p_charge": sum(charge for _, _, charge in jobs_settled),
            },
        )
        final = result.one()
        # Walk back from the final balances to what each entry left behind.
        balance, reserved = final.balance_micro, final.reserved_micro
        account_entries: list[dict[str, Any]] = []
        for job_id, release, charge in reversed(jobs_settled):
            if charge:
                account_entries.append(
                    _entry(account_id, job_id, EntryKind.CHARGE, charge, balance, reserved, now)
                )
            balance += charge
            account_entries.append(
                _entry(account_id, job_id, EntryKind.RELEASE, release, balance, reserved, now)
            )
            reserved += release
        entries.extend(reversed(account_entries))
    for entry in entries:  # ids in entry order (time-ordered ids sort the ledger)
        entry["id"] = new_uuid()
    if entries:
        await conn.execute(_INSERT_ENTRY, entries)


def _entry(
    account_id: uuid.UUID,
    job_id: uuid.UUID,
    kind: EntryKind,
    amount: int,
    balance_after: int,
    reserved_after: int,
    now: datetime,
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "job_id": job_id,
        "kind": kind.value,
        "amount_micro": amount,
        "balance_after_micro": balance_after,
        "reserved_after_micro": reserved_after,
        "note": None,
        "created_at": now,
    }

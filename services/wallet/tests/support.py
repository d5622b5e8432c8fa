"""What the wallet's tests share: when their clock starts, envelopes as other services send them, and
ledger postings (a credit, a debit) made straight through the ledger."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from contracts.envelope import Envelope, EventData
from contracts.wallet import EntryType, WalletReference
from services.wallet.domain import Posting
from services.wallet.ledger import Ledger, Posted

START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
"""Where the tests' clock (the ledger's, dashboard's and expiry job's idea of now) starts."""


def event(topic: str, data: EventData, producer: str = "test", **kw: Any) -> Envelope[Any]:
    return Envelope.new(event_type=topic, producer=producer, data=data, **kw)


def posting(
    member: str,
    entry_type: EntryType,
    amount: int,
    *,
    key: str | None = None,
    reason_code: str = "test",
    actor: str = "test",
    **more: Any,
) -> Posting:
    """A posting with its own idempotency key unless `key` is given."""
    return Posting(
        member_id=member,
        entry_type=entry_type,
        amount=amount,
        reason_code=reason_code,
        actor=actor,
        idempotency_key=key or str(uuid.uuid4()),
        **more,
    )


def credit(member: str, amount: int, key: str | None = None) -> Posting:
    return posting(member, EntryType.MILESTONE_AWARD, amount, key=key)


def debit(member: str, amount: int, key: str | None = None) -> Posting:
    return posting(
        member,
        EntryType.REDEMPTION,
        amount,
        key=key,
        reason_code="reward",
        reference=WalletReference(redemption_id=uuid.uuid4()),
    )


async def post(pool: asyncpg.Pool, ledger: Ledger, posting: Posting) -> Posted:
    async with pool.acquire() as conn, conn.transaction():
        return await ledger.post(conn, posting)

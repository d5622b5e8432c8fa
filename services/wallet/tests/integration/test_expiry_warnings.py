"""The expiry warning job against the real Postgres: one warning per member and expiry day, published
through the outbox towards the delivery service."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from contracts.delivery import DeliveryMessageRequested
from contracts.envelope import Envelope
from contracts.members import NotificationKind
from contracts.topics import Topics
from services.wallet.expiry_warnings import warn_expiring
from services.wallet.ledger import Ledger
from services.wallet.tests.support import credit, debit, post


async def _credit(pool: asyncpg.Pool, ledger: Ledger, member: str, amount: int) -> None:
    await post(pool, ledger, credit(member, amount))


async def _warnings(pool: asyncpg.Pool, member: str) -> list[Envelope[Any]]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE topic = $1 AND message_key = $2 ORDER BY id",
        Topics.DELIVERY_MESSAGE_REQUESTED.value,
        member,
    )
    topic = Topics.DELIVERY_MESSAGE_REQUESTED
    return [Envelope.decode(r["payload"], DeliveryMessageRequested, expected_type=topic) for r in rows]


async def test_points_expiring_within_the_window_are_warned_once_per_member_and_expiry(pool, ledger, clock):
    member = f"m-{uuid.uuid4().hex[:8]}"
    await _credit(pool, ledger, member, 300)
    clock.advance(days=1)
    await _credit(pool, ledger, member, 200)
    expires = await pool.fetch("SELECT expires_at FROM lots WHERE member_id = $1 ORDER BY expires_at", member)
    first_expiry = expires[0]["expires_at"]

    clock.set(first_expiry - timedelta(days=20))
    await warn_expiring(pool, clock, within_days=10)
    assert await _warnings(pool, member) == []

    clock.set(first_expiry - timedelta(days=10))
    await warn_expiring(pool, clock, within_days=10)
    await warn_expiring(pool, clock, within_days=10)
    (warning,) = await _warnings(pool, member)
    message = warning.data
    assert message.notice is NotificationKind.POINTS_EXPIRING
    assert message.template == "points_expiring"
    assert message.params == {
        "points": "300",
        "expires_on": first_expiry.date().isoformat(),
        "days_left": "10",
    }

    clock.advance(days=1)
    await warn_expiring(pool, clock, within_days=10)
    later = await _warnings(pool, member)
    assert [w.data.params["points"] for w in later] == ["300", "200"]
    assert len({w.data.message_id for w in later}) == 2


async def test_spent_points_are_not_warned_about(pool, ledger, clock):
    member = f"m-{uuid.uuid4().hex[:8]}"
    await _credit(pool, ledger, member, 100)
    expires_at = await pool.fetchval("SELECT expires_at FROM lots WHERE member_id = $1", member)
    async with pool.acquire() as conn, conn.transaction():
        await ledger.post(conn, debit(member, 100))

    clock.set(expires_at - timedelta(days=3))
    await warn_expiring(pool, clock, within_days=14)

    assert await _warnings(pool, member) == []

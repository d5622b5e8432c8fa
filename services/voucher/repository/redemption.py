"""The statements of a partner's redemption: the earlier answer to an idempotency key, the code locked for
the decision, and the redemption recorded (see `services.voucher.redemption`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from chassis.db import Connection


async def redemption_by_key(conn: Connection, partner_id: str, idempotency_key: str) -> asyncpg.Record | None:
    """The partner's redemption under this key, with its code's `lookup_hash`."""
    return await conn.fetchrow(
        "SELECT r.*, c.lookup_hash FROM redemptions r JOIN codes c USING (code_id)"
        " WHERE r.partner_id = $1 AND r.idempotency_key = $2",
        partner_id,
        idempotency_key,
    )


async def lock_code_to_redeem(conn: Connection, lookup_hash: bytes) -> asyncpg.Record | None:
    """The code with its campaign's partners, partial rule and currency, locked for the decision."""
    return await conn.fetchrow(
        """
        SELECT c.code_id, c.campaign_id, c.status, c.test, c.value, c.remaining_value, c.expires_at,
               c.order_id, c.member_id, k.partner_ids, k.allow_partial, k.currency
          FROM codes c JOIN campaigns k USING (campaign_id)
         WHERE c.lookup_hash = $1
           FOR UPDATE OF c
        """,
        lookup_hash,
    )


async def code_of_attempt(conn: Connection, lookup_hash: bytes) -> asyncpg.Record | None:
    """What a refused attempt may name of the code it tried: its order, member, campaign and partners."""
    return await conn.fetchrow(
        """
        SELECT c.code_id, c.campaign_id, c.order_id, c.member_id, k.partner_ids, k.currency
          FROM codes c JOIN campaigns k USING (campaign_id)
         WHERE c.lookup_hash = $1
        """,
        lookup_hash,
    )


@dataclass(frozen=True)
class Redemption:
    redemption_id: uuid.UUID
    partner_id: str
    idempotency_key: str
    code_id: uuid.UUID
    campaign_id: str
    order_id: uuid.UUID | None
    amount: Decimal
    remaining_value: Decimal
    status: str
    previous_status: str
    currency: str
    channel: str
    location: str | None
    test: bool


async def record_redemption(conn: Connection, redemption: Redemption) -> asyncpg.Record:
    """The code's new value and status, the redemption (returned; a key already used raises
    UniqueViolationError) and the code's history entry."""
    r = redemption
    await conn.execute(
        "UPDATE codes SET remaining_value = $2, status = $3, updated_at = now() WHERE code_id = $1",
        r.code_id,
        r.remaining_value,
        r.status,
    )
    saved = await conn.fetchrow(
        """
        INSERT INTO redemptions (redemption_id, partner_id, idempotency_key, code_id, campaign_id, amount,
                                 remaining_value, currency, channel, location, test)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        RETURNING *
        """,
        r.redemption_id,
        r.partner_id,
        r.idempotency_key,
        r.code_id,
        r.campaign_id,
        r.amount,
        r.remaining_value,
        r.currency,
        r.channel,
        r.location,
        r.test,
    )
    assert saved is not None
    await conn.execute(
        "INSERT INTO code_events (code_id, action, status, previous_status, actor, order_id, details)"
        " VALUES ($1, 'redeemed', $2, $3, $4, $5,"
        " jsonb_build_object('amount', $6::text, 'remaining_value', $7::text, 'redemption_id', $8::text))",
        r.code_id,
        r.status,
        r.previous_status,
        f"partner:{r.partner_id}",
        r.order_id,
        str(r.amount),
        str(r.remaining_value),
        str(r.redemption_id),
    )
    return saved

"""Reading deliveries and their attempts, campaign settings, and support's corrections and resends."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from chassis.db import Connection
from chassis.wakeups import notify_after_commit
from contracts.values import Channel

from .join import WAKE_CHANNEL


async def fallback_allowed(conn: Connection, campaign_id: str | None, default: bool) -> bool:
    if campaign_id is None:
        return default
    allowed = await conn.fetchval(
        "SELECT fallback_allowed FROM campaign_settings WHERE campaign_id = $1", campaign_id
    )
    return default if allowed is None else bool(allowed)


async def set_campaign_fallback(conn: Connection, campaign_id: str, allowed: bool, actor: str) -> None:
    await conn.execute(
        """
        INSERT INTO campaign_settings (campaign_id, fallback_allowed, updated_by) VALUES ($1, $2, $3)
        ON CONFLICT (campaign_id) DO UPDATE
            SET fallback_allowed = EXCLUDED.fallback_allowed, updated_by = EXCLUDED.updated_by,
                updated_at = now()
        """,
        campaign_id,
        allowed,
        actor,
    )


async def database_now(conn: Connection) -> datetime | None:
    now: datetime | None = await conn.fetchval("SELECT now()")
    return now


async def find_delivery(conn: Connection, delivery_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM deliveries WHERE delivery_id = $1", delivery_id)


async def find_by_order(conn: Connection, order_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM deliveries WHERE order_id = $1", order_id)


async def attempts_of(conn: Connection, delivery_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt", delivery_id
    )


@dataclass(frozen=True)
class FailedFilter:
    campaign_id: str | None = None
    channel: str | None = None
    reason_code: str | None = None
    failed_from: datetime | None = None
    failed_to: datetime | None = None
    limit: int = 100
    after: tuple[datetime, uuid.UUID] | None = None


async def list_failed(conn: Connection, f: FailedFilter) -> list[asyncpg.Record]:
    return await conn.fetch(
        """
        SELECT * FROM deliveries
         WHERE status = 'failed'
           AND ($1::text IS NULL OR campaign_id = $1)
           AND ($2::text IS NULL OR channel = $2)
           AND ($3::text IS NULL OR last_reason_code = $3)
           AND ($4::timestamptz IS NULL OR failed_at >= $4)
           AND ($5::timestamptz IS NULL OR failed_at < $5)
           AND ($6::timestamptz IS NULL OR (failed_at, delivery_id) < ($6, $7::uuid))
         ORDER BY failed_at DESC, delivery_id DESC
         LIMIT $8
        """,
        f.campaign_id,
        f.channel,
        f.reason_code,
        f.failed_from,
        f.failed_to,
        f.after[0] if f.after else None,
        f.after[1] if f.after else None,
        f.limit,
    )


async def correct_contacts(
    conn: Connection, delivery_id: uuid.UUID, *, email: str | None, phone: str | None, channel: Channel | None
) -> None:
    await conn.execute(
        """
        UPDATE deliveries SET email = coalesce($2, email), phone = coalesce($3, phone),
               channel = coalesce($4, channel), requested_channel = coalesce($4, requested_channel),
               updated_at = now()
         WHERE delivery_id = $1
        """,
        delivery_id,
        email,
        phone,
        channel.value if channel else None,
    )


async def start_resend(conn: Connection, delivery_id: uuid.UUID) -> str:
    """A new send round: a new idempotency key and Message-ID, the retry budget renewed, the
    recipient's chosen channel first again."""
    channel = await conn.fetchval(
        """
        UPDATE deliveries
           SET status = 'queued', send_round = send_round + 1, channel = requested_channel,
               channel_attempts = 0, tried_channels = '{}', next_attempt_at = now(), failed_at = NULL,
               last_resend_at = now(), updated_at = now()
         WHERE delivery_id = $1
        RETURNING channel
        """,
        delivery_id,
    )
    await notify_after_commit(conn, WAKE_CHANNEL, channel)
    return str(channel)


def row_dict(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row.items())

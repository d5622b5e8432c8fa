"""SQL for the portal's read model of orders and for agent actions."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from chassis.db import Connection
from contracts.delivery import DeliveryFailed, DeliverySucceeded
from contracts.envelope import EventData
from contracts.orders import OrderStateChanged
from contracts.vouchers import AnyVoucherIssued, VoucherStatusChanged


def _fields(data: EventData, *names: str) -> list[Any]:
    """The payload's values of these fields, as a statement's arguments in this order."""
    return [getattr(data, name) for name in names]


async def upsert_order_state(conn: Connection, data: OrderStateChanged, at: datetime) -> None:
    """Keep the newest state: an older event arriving late changes only the timeline, not the state."""
    await conn.execute(
        """
        INSERT INTO portal_orders (order_id, booking_id, member_id, campaign_id, external_ref, source, state,
                                   fulfilment_status, state_changed_at, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
        ON CONFLICT (order_id) DO UPDATE SET
            booking_id = EXCLUDED.booking_id, member_id = EXCLUDED.member_id,
            campaign_id = EXCLUDED.campaign_id, external_ref = EXCLUDED.external_ref,
            source = EXCLUDED.source,
            state = CASE WHEN portal_orders.state_changed_at IS NULL OR portal_orders.state_changed_at <= $9
                         THEN EXCLUDED.state ELSE portal_orders.state END,
            fulfilment_status = CASE WHEN portal_orders.state_changed_at IS NULL
                                          OR portal_orders.state_changed_at <= $9
                                     THEN EXCLUDED.fulfilment_status ELSE portal_orders.fulfilment_status END,
            state_changed_at = greatest(portal_orders.state_changed_at, $9),
            updated_at = greatest(portal_orders.updated_at, $9)
        """,
        *_fields(
            data,
            "order_id",
            "booking_id",
            "member_id",
            "campaign_id",
            "external_ref",
            "source",
            "state",
            "fulfilment_status",
        ),
        at,
    )


async def upsert_voucher(conn: Connection, data: AnyVoucherIssued, at: datetime) -> None:
    await conn.execute(
        """
        INSERT INTO portal_orders (order_id, code_id, masked_code, face_value, currency, voucher_expires_at,
                                   updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (order_id) DO UPDATE SET code_id = $2, masked_code = $3, face_value = $4, currency = $5,
            voucher_expires_at = $6, updated_at = greatest(portal_orders.updated_at, $7)
        """,
        *_fields(data, "order_id", "code_id", "masked_code", "face_value", "currency", "expires_at"),
        at,
    )


async def record_issued_code(conn: Connection, data: AnyVoucherIssued, at: datetime) -> None:
    """A status announced before the issue (topics race) is newer than the issue's expiry: it is kept."""
    await conn.execute(
        """
        INSERT INTO portal_codes (order_id, code_id, masked_code, issued_at, expires_at)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (order_id, code_id) DO UPDATE SET
            masked_code = EXCLUDED.masked_code, issued_at = EXCLUDED.issued_at,
            expires_at = CASE WHEN portal_codes.status_at IS NULL
                              THEN EXCLUDED.expires_at ELSE portal_codes.expires_at END
        """,
        data.order_id,
        data.code_id,
        data.masked_code,
        at,
        data.expires_at,
    )


async def record_code_status(conn: Connection, data: VoucherStatusChanged, at: datetime) -> None:
    """The newest status by event time wins; its expiry is the code's expiry as of that status."""
    await conn.execute(
        """
        INSERT INTO portal_codes (order_id, code_id, status, remaining_value, expires_at, status_at)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (order_id, code_id) DO UPDATE SET
            status = EXCLUDED.status,
            remaining_value = COALESCE(EXCLUDED.remaining_value, portal_codes.remaining_value),
            expires_at = EXCLUDED.expires_at, status_at = EXCLUDED.status_at
        WHERE portal_codes.status_at IS NULL OR portal_codes.status_at <= EXCLUDED.status_at
        """,
        *_fields(data, "order_id", "code_id", "status", "remaining_value", "expires_at"),
        at,
    )


async def order_codes(conn: Connection, order_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT * FROM portal_codes WHERE order_id = $1 ORDER BY issued_at NULLS LAST, code_id", order_id
        )
    )


async def touch_order(conn: Connection, order_id: uuid.UUID, at: datetime) -> None:
    """Make sure the order has a row, so a delivery seen before the order still shows up."""
    await conn.execute(
        "INSERT INTO portal_orders (order_id, updated_at) VALUES ($1, $2)"
        " ON CONFLICT (order_id) DO UPDATE SET updated_at = greatest(portal_orders.updated_at, $2)",
        order_id,
        at,
    )


async def add_timeline(
    conn: Connection,
    *,
    event_id: uuid.UUID,
    order_id: uuid.UUID,
    at: datetime,
    kind: str,
    details: dict[str, Any],
) -> None:
    await conn.execute(
        "INSERT INTO portal_timeline (event_id, order_id, occurred_at, kind, details) VALUES ($1, $2, $3, $4,"
        " $5::jsonb) ON CONFLICT DO NOTHING",
        event_id,
        order_id,
        at,
        kind,
        json.dumps(details, default=str),
    )


async def add_attempt(
    conn: Connection,
    event_id: uuid.UUID,
    data: DeliverySucceeded | DeliveryFailed,
    outcome: str,
    at: datetime,
    *,
    reason_code: str | None = None,
    retryable: bool | None = None,
    final: bool | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO delivery_attempts (event_id, order_id, delivery_id, attempt, channel, outcome,"
        " reason_code, retryable, final, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT DO NOTHING",
        event_id,
        data.order_id,
        data.delivery_id,
        data.attempt,
        data.channel,
        outcome,
        reason_code,
        retryable,
        final,
        at,
    )


async def find_order(conn: Connection, reference: str) -> asyncpg.Record | None:
    """By order id (a UUID) or booking id."""
    try:
        order_id = uuid.UUID(reference)
    except ValueError:
        return await conn.fetchrow("SELECT * FROM portal_orders WHERE booking_id = $1", reference)
    return await conn.fetchrow("SELECT * FROM portal_orders WHERE order_id = $1", order_id)


async def order_timeline(conn: Connection, order_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT occurred_at, kind, details::text AS details FROM portal_timeline WHERE order_id = $1"
        " ORDER BY occurred_at, event_id",
        order_id,
    )
    return [{"occurred_at": r["occurred_at"], "kind": r["kind"], **json.loads(r["details"])} for r in rows]


async def order_attempts(conn: Connection, order_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT delivery_id, attempt, channel, outcome, reason_code, retryable, final, occurred_at"
        " FROM delivery_attempts WHERE order_id = $1 ORDER BY occurred_at, attempt",
        order_id,
    )


async def order_actions(conn: Connection, order_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT action_id, kind, actor, ticket_id, reason, points, requested_at, applied_at, wallet_entry_id"
        " FROM agent_actions WHERE order_id = $1 ORDER BY requested_at",
        order_id,
    )


async def find_action(conn: Connection, actor: str, kind: str, idempotency_key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM agent_actions WHERE actor = $1 AND kind = $2 AND idempotency_key = $3",
        actor,
        kind,
        idempotency_key,
    )


async def goodwill_granted_since(conn: Connection, actor: str, since: datetime) -> int:
    total = await conn.fetchval(
        "SELECT coalesce(sum(points), 0) FROM agent_actions WHERE actor = $1 AND kind = 'goodwill'"
        " AND requested_at >= $2",
        actor,
        since,
    )
    return int(total)


async def insert_action(
    conn: Connection,
    *,
    action_id: uuid.UUID,
    kind: str,
    actor: str,
    order_id: uuid.UUID,
    member_id: str | None,
    ticket_id: str | None,
    reason: str | None,
    points: int | None,
    idempotency_key: str,
    at: datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "INSERT INTO agent_actions (action_id, kind, actor, order_id, member_id, ticket_id, reason, points,"
        " idempotency_key, requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        action_id,
        kind,
        actor,
        order_id,
        member_id,
        ticket_id,
        reason,
        points,
        idempotency_key,
        at,
    )
    assert row is not None
    return row


async def mark_goodwill_applied(
    conn: Connection, action_id: uuid.UUID, entry_id: uuid.UUID, at: datetime
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "UPDATE agent_actions SET applied_at = coalesce(applied_at, $3), wallet_entry_id = $2"
        " WHERE action_id = $1 AND kind = 'goodwill' RETURNING *",
        action_id,
        entry_id,
        at,
    )

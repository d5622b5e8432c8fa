"""The member dashboard's read model in SQL: reward orders, the codes each held, and the member audit
facts kept until an order's member is known (see `services.wallet.readmodel`). Each write takes rows
so that one event and a whole batch run the same statement."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from chassis.db import Connection

ORDER_UPSERT = """
    INSERT INTO reward_orders (order_id, booking_id, member_id, campaign_id, source, external_ref,
        redemption_id, state, fulfilment_status, amount, currency, created_at, state_changed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
    ON CONFLICT (order_id) DO UPDATE SET
        booking_id = EXCLUDED.booking_id,
        member_id = EXCLUDED.member_id,
        campaign_id = EXCLUDED.campaign_id,
        source = EXCLUDED.source,
        external_ref = COALESCE(EXCLUDED.external_ref, reward_orders.external_ref),
        redemption_id = COALESCE(EXCLUDED.redemption_id, reward_orders.redemption_id),
        -- Terminal states never change again; a late event does not bring an order back.
        state = CASE WHEN reward_orders.state IN ('completed', 'cancelled')
                     THEN reward_orders.state ELSE EXCLUDED.state END,
        fulfilment_status = CASE WHEN reward_orders.state IN ('completed', 'cancelled')
                     THEN reward_orders.fulfilment_status ELSE EXCLUDED.fulfilment_status END,
        amount = COALESCE(EXCLUDED.amount, reward_orders.amount),
        currency = COALESCE(EXCLUDED.currency, reward_orders.currency),
        created_at = LEAST(COALESCE(reward_orders.created_at, EXCLUDED.created_at), EXCLUDED.created_at),
        state_changed_at = EXCLUDED.state_changed_at
"""


PENDING_INSERT = (
    "INSERT INTO pending_member_audit (order_id, occurred_at, actor, action, details)"
    " VALUES ($1, $2, $3, $4, $5::jsonb)"
)


VOUCHER_UPSERT = """
    INSERT INTO reward_orders (order_id, campaign_id, code_id, masked_code, face_value,
        voucher_currency, voucher_expires_at, issued_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (order_id) DO UPDATE SET
        campaign_id = COALESCE(reward_orders.campaign_id, EXCLUDED.campaign_id),
        code_id = EXCLUDED.code_id,
        masked_code = EXCLUDED.masked_code,
        face_value = EXCLUDED.face_value,
        voucher_currency = EXCLUDED.voucher_currency,
        voucher_expires_at = EXCLUDED.voucher_expires_at,
        issued_at = EXCLUDED.issued_at
"""


# A status announced before the issue (topics race) is newer than the issue's expiry: it is kept.
CODE_ISSUED_UPSERT = """
    INSERT INTO reward_codes (order_id, code_id, masked_code, issued_at, expires_at)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (order_id, code_id) DO UPDATE SET
        masked_code = EXCLUDED.masked_code,
        issued_at = EXCLUDED.issued_at,
        expires_at = CASE WHEN reward_codes.status_at IS NULL
                          THEN EXCLUDED.expires_at ELSE reward_codes.expires_at END
"""


# The latest status by event time wins; the event's expiry is the code's expiry as of that status.
CODE_STATUS_UPSERT = """
    INSERT INTO reward_codes (order_id, code_id, status, remaining_value, expires_at, status_at)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (order_id, code_id) DO UPDATE SET
        status = EXCLUDED.status,
        remaining_value = COALESCE(EXCLUDED.remaining_value, reward_codes.remaining_value),
        expires_at = EXCLUDED.expires_at,
        status_at = EXCLUDED.status_at
    WHERE reward_codes.status_at IS NULL OR reward_codes.status_at <= EXCLUDED.status_at
"""


# Outcomes travel on two topics: the latest by event time wins, a success is never forgotten.
DELIVERY_UPSERT = """
    INSERT INTO reward_orders (order_id, delivery_outcome, delivery_final, delivery_channel,
        delivery_at, delivered_at)
    VALUES ($1, $2::text, $3, $4, $5::timestamptz,
            CASE WHEN $2::text = 'succeeded' THEN $5::timestamptz END)
    ON CONFLICT (order_id) DO UPDATE SET
        delivery_outcome = CASE WHEN reward_orders.delivery_at IS NULL OR reward_orders.delivery_at <= $5
                                THEN EXCLUDED.delivery_outcome ELSE reward_orders.delivery_outcome END,
        delivery_final = CASE WHEN reward_orders.delivery_at IS NULL OR reward_orders.delivery_at <= $5
                              THEN EXCLUDED.delivery_final ELSE reward_orders.delivery_final END,
        delivery_channel = EXCLUDED.delivery_channel,
        delivery_at = GREATEST(reward_orders.delivery_at, EXCLUDED.delivery_at),
        delivered_at = COALESCE(reward_orders.delivered_at, EXCLUDED.delivered_at)
"""


ORDER_VIEW = """
    SELECT o.*, c.status AS code_status, c.remaining_value AS code_remaining_value,
           CASE WHEN c.status_at IS NULL THEN o.voucher_expires_at ELSE c.expires_at END AS code_expires_at,
           (SELECT jsonb_agg(jsonb_build_object('code_id', r.code_id, 'masked_code', r.masked_code,
                                                'status', r.status, 'issued_at', r.issued_at)
                             ORDER BY r.issued_at)::text
              FROM reward_codes r
             WHERE r.order_id = o.order_id AND r.code_id IS DISTINCT FROM o.code_id
               AND r.masked_code IS NOT NULL) AS replaced_codes
      FROM reward_orders o
      LEFT JOIN reward_codes c ON c.order_id = o.order_id AND c.code_id = o.code_id
"""


async def save_orders(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.executemany(ORDER_UPSERT, rows)


async def save_vouchers(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.executemany(VOUCHER_UPSERT, rows)


async def save_issued_codes(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.executemany(CODE_ISSUED_UPSERT, rows)


async def save_code_statuses(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.executemany(CODE_STATUS_UPSERT, rows)


async def save_deliveries(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.executemany(DELIVERY_UPSERT, rows)


async def keep_pending(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Facts (order id, occurred at, actor, action, details JSON) waiting for their order's member."""
    await conn.executemany(PENDING_INSERT, rows)


async def take_pending(conn: Connection, order_ids: Sequence[uuid.UUID]) -> list[Any]:
    """The facts kept for these orders, oldest first, removed from the waiting list."""
    rows = await conn.fetch(
        "DELETE FROM pending_member_audit WHERE order_id = ANY($1::uuid[])"
        " RETURNING id, order_id, occurred_at, actor, action, details::text AS details",
        list(order_ids),
    )
    return sorted(rows, key=lambda r: r["id"])


async def members_of_orders(conn: Connection, order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The member of each order whose member is known."""
    rows = await conn.fetch(
        "SELECT order_id, member_id FROM reward_orders WHERE order_id = ANY($1::uuid[])",
        list(set(order_ids)),
    )
    return {r["order_id"]: r["member_id"] for r in rows if r["member_id"] is not None}


async def member_order_rows(conn: Connection, member_id: str, limit: int) -> list[Any]:
    """A member's orders, newest first; a storefront order with the points it cost (debits less refunds)."""
    return await conn.fetch(
        f"""
        SELECT v.*,
               (SELECT sum(CASE WHEN l.direction = 'debit' THEN l.amount ELSE -l.amount END)
                  FROM ledger_entries l
                 WHERE l.redemption_id = v.redemption_id AND l.member_id = v.member_id) AS points_spent
          FROM ({ORDER_VIEW} WHERE o.member_id = $1) v
         ORDER BY v.created_at DESC NULLS LAST, v.order_id
         LIMIT $2
        """,  # noqa: S608 -- the view is a module constant; values are bind parameters
        member_id,
        limit,
    )


async def member_order_row(conn: Connection, member_id: str, order_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        f"{ORDER_VIEW} WHERE o.member_id = $1 AND o.order_id = $2", member_id, order_id
    )

"""The member dashboard's read model of reward orders, and the member audit entries about orders.

Order, voucher and delivery events arrive on different topics in any order; each one fills its own
columns of the order's row. Facts about an order whose member is not known yet wait in
`pending_member_audit` and join the member's chain when `order.state_changed` names the member.
Only the masked code is stored: the clear code on `voucher.issued` is never read here.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chassis.audit import canonical_json
from chassis.db import Connection
from contracts.delivery import DeliveryFailed, DeliverySucceeded
from contracts.orders import OrderStateChanged
from contracts.vouchers import VoucherIssued

from .domain import DeliveryStatus, delivery_status
from .member_audit import AuditFact, append_member_audit

VOUCHER_SERVICE = "voucher"


@dataclass(frozen=True)
class OrderFact:
    """A fact about an order for its member's chain (member looked up, or kept pending until known)."""

    order_id: uuid.UUID
    actor: str
    action: str
    occurred_at: datetime
    details: dict[str, Any]

    async def record(self, conn: Connection) -> None:
        await record_for_order(
            conn,
            order_id=self.order_id,
            member_id=None,
            actor=self.actor,
            action=self.action,
            occurred_at=self.occurred_at,
            details=self.details,
        )


async def record_for_order(
    conn: Connection,
    *,
    order_id: uuid.UUID,
    member_id: str | None,
    actor: str,
    action: str,
    occurred_at: datetime,
    details: dict[str, Any],
) -> None:
    """Append to the order's member's chain, or keep the fact until the member is known."""
    if member_id is None:
        member_id = await conn.fetchval("SELECT member_id FROM reward_orders WHERE order_id = $1", order_id)
    if member_id is not None:
        await append_member_audit(
            conn, member_id=member_id, actor=actor, action=action, occurred_at=occurred_at, details=details
        )
        return
    await conn.execute(
        PENDING_INSERT,
        order_id,
        occurred_at,
        actor,
        action,
        canonical_json(details),
    )


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


def order_args(data: OrderStateChanged, occurred_at: datetime) -> tuple[Any, ...]:
    return (
        data.order_id,
        data.booking_id,
        data.member_id,
        data.campaign_id,
        data.source.value,
        data.external_ref,
        data.redemption_id,
        data.state.value,
        data.fulfilment_status.value if data.fulfilment_status else None,
        data.amount,
        data.currency,
        occurred_at,
    )


def order_fact(data: OrderStateChanged, occurred_at: datetime) -> AuditFact | None:
    """The member's audit entry for a state change; None when the state did not change."""
    if data.previous_state is not None and data.previous_state == data.state:
        return None
    action = "order_created" if data.previous_state is None else f"order_{data.state.value}"
    details: dict[str, Any] = {
        "order_id": str(data.order_id),
        "booking_id": data.booking_id,
        "campaign_id": data.campaign_id,
        "source": data.source.value,
        "state": data.state.value,
    }
    if data.reason:
        details["reason"] = data.reason
    return AuditFact(data.member_id, data.actor or "service:order", action, occurred_at, details)


async def apply_order_state(conn: Connection, data: OrderStateChanged, occurred_at: datetime) -> None:
    await conn.execute(ORDER_UPSERT, *order_args(data, occurred_at))
    fact = order_fact(data, occurred_at)
    if fact is not None:
        await append_member_audit(
            conn,
            member_id=fact.member_id,
            actor=fact.actor,
            action=fact.action,
            occurred_at=fact.occurred_at,
            details=fact.details,
        )
    pending = await conn.fetch(
        "DELETE FROM pending_member_audit WHERE order_id = $1"
        " RETURNING id, occurred_at, actor, action, details::text AS details",
        data.order_id,
    )
    for row in sorted(pending, key=lambda r: r["id"]):
        await append_member_audit(
            conn,
            member_id=data.member_id,
            actor=row["actor"],
            action=row["action"],
            occurred_at=row["occurred_at"],
            details=json.loads(row["details"]),
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


def voucher_args(data: VoucherIssued, occurred_at: datetime) -> tuple[Any, ...]:
    return (
        data.order_id,
        data.campaign_id,
        data.code_id,
        data.masked_code,
        data.face_value,
        data.currency,
        data.expires_at,
        occurred_at,
    )


def voucher_fact(data: VoucherIssued, occurred_at: datetime) -> OrderFact:
    details = {"order_id": str(data.order_id), "code_id": str(data.code_id), "masked_code": data.masked_code}
    return OrderFact(data.order_id, "service:voucher", "voucher_issued", occurred_at, details)


async def apply_voucher_issued(conn: Connection, data: VoucherIssued, occurred_at: datetime) -> None:
    await conn.execute(VOUCHER_UPSERT, *voucher_args(data, occurred_at))
    await voucher_fact(data, occurred_at).record(conn)


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


def delivery_args(data: DeliverySucceeded | DeliveryFailed, occurred_at: datetime) -> tuple[Any, ...]:
    succeeded = isinstance(data, DeliverySucceeded)
    final = None if succeeded else data.final  # type: ignore[union-attr]
    return (data.order_id, "succeeded" if succeeded else "failed", final, data.channel.value, occurred_at)


def delivery_fact(data: DeliverySucceeded | DeliveryFailed, occurred_at: datetime) -> OrderFact:
    details: dict[str, Any] = {
        "order_id": str(data.order_id),
        "delivery_id": str(data.delivery_id),
        "channel": data.channel.value,
        "attempt": data.attempt,
    }
    action = "delivery_succeeded"
    if isinstance(data, DeliveryFailed):
        details |= {"reason_code": data.reason_code, "retryable": data.retryable, "final": data.final}
        action = "delivery_failed"
    return OrderFact(data.order_id, "service:delivery", action, occurred_at, details)


async def apply_delivery(
    conn: Connection, data: DeliverySucceeded | DeliveryFailed, occurred_at: datetime
) -> None:
    await conn.execute(DELIVERY_UPSERT, *delivery_args(data, occurred_at))
    await delivery_fact(data, occurred_at).record(conn)


def _reveal(code_id: uuid.UUID) -> dict[str, str]:
    return {"service": VOUCHER_SERVICE, "method": "POST", "path": f"/v1/codes/{code_id}/reveal"}


def order_to_json(row: Any) -> dict[str, Any]:
    status = delivery_status(
        state=row["state"],
        fulfilment_status=row["fulfilment_status"],
        delivery_outcome=row["delivery_outcome"],
        delivery_final=row["delivery_final"],
        code_issued=row["code_id"] is not None,
    )
    value = row["face_value"] if row["amount"] is None else row["amount"]
    currency = row["currency"] or row["voucher_currency"]
    shows_code = status is DeliveryStatus.DELIVERED and row["masked_code"] is not None
    return {
        "order_id": str(row["order_id"]),
        "booking_id": row["booking_id"],
        "date": row["created_at"].isoformat() if row["created_at"] else None,
        "reward": {
            "campaign_id": row["campaign_id"],
            "value": None if value is None else format(value, "f"),
            "currency": currency,
        },
        "source": row["source"],
        "state": row["state"],
        "fulfilment_status": row["fulfilment_status"],
        "delivery_status": status.value,
        "delivered_at": row["delivered_at"].isoformat() if row["delivered_at"] else None,
        "masked_code": row["masked_code"] if shows_code else None,
        "code_expires_at": row["voucher_expires_at"].isoformat() if row["voucher_expires_at"] else None,
        # The clear code is shown only by the voucher service, which checks ownership and audits it.
        "reveal": _reveal(row["code_id"]) if shows_code else None,
        "redemption_id": str(row["redemption_id"]) if row["redemption_id"] else None,
    }


async def member_orders(conn: Connection, member_id: str, limit: int) -> list[dict[str, Any]]:
    # A storefront order shows the points it cost: its redemption's debits less any refund.
    rows = await conn.fetch(
        """
        SELECT o.*,
               (SELECT sum(CASE WHEN l.direction = 'debit' THEN l.amount ELSE -l.amount END)
                  FROM ledger_entries l
                 WHERE l.redemption_id = o.redemption_id AND l.member_id = o.member_id) AS points_spent
          FROM reward_orders o
         WHERE o.member_id = $1
         ORDER BY o.created_at DESC NULLS LAST, o.order_id
         LIMIT $2
        """,
        member_id,
        limit,
    )
    return [order_to_json(r) | {"points_spent": _points(r["points_spent"])} for r in rows]


def _points(value: int | None) -> str | None:
    return None if value is None else str(value)


async def member_order(conn: Connection, member_id: str, order_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "SELECT * FROM reward_orders WHERE member_id = $1 AND order_id = $2", member_id, order_id
    )
    return order_to_json(row) if row else None

"""The member dashboard's read model of reward orders, and the member audit entries about orders.

Order, voucher and delivery events arrive on different topics in any order; each one fills its own
columns of the order's row. Facts about an order whose member is not known yet wait in
`pending_member_audit` and join the member's chain when `order.state_changed` names the member.
Only the masked code is stored: the clear code on `voucher.issued` is never read here.
Each code an order held is kept in `reward_codes` with the latest status `voucher.status_changed`
gave it, so the member sees the current code redeemed, partly redeemed, expired or extended, and the
codes it replaced.
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
from contracts.vouchers import AnyVoucherIssued, CodeStatus, VoucherStatusChanged

from .domain import DeliveryStatus, delivery_status
from .member_audit import AuditFact, append_member_audit, append_member_audit_many
from .repository import readmodel as repo

VOUCHER_SERVICE = "voucher"
GONE_FROM_ORDER = frozenset({CodeStatus.AVAILABLE.value, CodeStatus.RECOVERED.value, "void"})
"""A code in one of these states is no longer the order's to show or reveal."""


@dataclass(frozen=True)
class OrderFact:
    """A fact about an order for its member's chain (member looked up, or kept pending until known)."""

    order_id: uuid.UUID
    actor: str
    action: str
    occurred_at: datetime
    details: dict[str, Any]

    async def record(self, conn: Connection, member_id: str | None = None) -> None:
        """Append to the chain of the order's member (`member_id` when the caller knows it already),
        or keep the fact until the member is known."""
        if member_id is None:
            member_id = (await repo.members_of_orders(conn, [self.order_id])).get(self.order_id)
        if member_id is not None:
            await append_member_audit(
                conn,
                member_id=member_id,
                actor=self.actor,
                action=self.action,
                occurred_at=self.occurred_at,
                details=self.details,
            )
            return
        pending = (self.order_id, self.occurred_at, self.actor, self.action, canonical_json(self.details))
        await repo.keep_pending(conn, [pending])


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
    await repo.save_orders(conn, [order_args(data, occurred_at)])
    fact = order_fact(data, occurred_at)
    # Facts kept while the member was unknown join the chain right after the state change.
    kept = [
        AuditFact(data.member_id, row["actor"], row["action"], row["occurred_at"], json.loads(row["details"]))
        for row in await repo.take_pending(conn, [data.order_id])
    ]
    await append_member_audit_many(conn, [fact, *kept] if fact is not None else kept)


def voucher_args(data: AnyVoucherIssued, occurred_at: datetime) -> tuple[Any, ...]:
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


def code_issued_args(data: AnyVoucherIssued, occurred_at: datetime) -> tuple[Any, ...]:
    return (data.order_id, data.code_id, data.masked_code, occurred_at, data.expires_at)


def voucher_fact(data: AnyVoucherIssued, occurred_at: datetime) -> OrderFact:
    details = {"order_id": str(data.order_id), "code_id": str(data.code_id), "masked_code": data.masked_code}
    return OrderFact(data.order_id, "service:voucher", "voucher_issued", occurred_at, details)


async def apply_voucher_issued(conn: Connection, data: AnyVoucherIssued, occurred_at: datetime) -> None:
    await repo.save_vouchers(conn, [voucher_args(data, occurred_at)])
    await repo.save_issued_codes(conn, [code_issued_args(data, occurred_at)])
    await voucher_fact(data, occurred_at).record(conn)


def is_members_code(data: VoucherStatusChanged) -> bool:
    """Test codes and codes held by no order never reach a member's dashboard."""
    return not data.test and data.order_id is not None


def code_status_args(data: VoucherStatusChanged, occurred_at: datetime) -> tuple[Any, ...]:
    return (
        data.order_id,
        data.code_id,
        data.status.value,
        data.remaining_value,
        data.expires_at,
        occurred_at,
    )


async def apply_code_status(conn: Connection, data: VoucherStatusChanged, occurred_at: datetime) -> None:
    if is_members_code(data):
        await repo.save_code_statuses(conn, [code_status_args(data, occurred_at)])


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
    await repo.save_deliveries(conn, [delivery_args(data, occurred_at)])
    await delivery_fact(data, occurred_at).record(conn)


def _reveal(code_id: uuid.UUID) -> dict[str, str]:
    return {"service": VOUCHER_SERVICE, "method": "POST", "path": f"/v1/codes/{code_id}/reveal"}


def _code_status(row: Any) -> str | None:
    if row["code_id"] is None:
        return None
    return str(row["code_status"] or CodeStatus.ISSUED.value)


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
    code_status = _code_status(row)
    shows_code = (
        status is DeliveryStatus.DELIVERED
        and row["masked_code"] is not None
        and code_status not in GONE_FROM_ORDER
    )
    remaining = row["code_remaining_value"]
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
        "code_status": code_status,
        "code_remaining_value": None if remaining is None else format(remaining, "f"),
        "code_expires_at": row["code_expires_at"].isoformat() if row["code_expires_at"] else None,
        "replaced_codes": json.loads(row["replaced_codes"]) if row["replaced_codes"] else [],
        # The clear code is shown only by the voucher service, which checks ownership and audits it.
        "reveal": _reveal(row["code_id"]) if shows_code else None,
        "redemption_id": str(row["redemption_id"]) if row["redemption_id"] else None,
    }


async def member_orders(conn: Connection, member_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await repo.member_order_rows(conn, member_id, limit)
    return [order_to_json(r) | {"points_spent": _points(r["points_spent"])} for r in rows]


def _points(value: int | None) -> str | None:
    return None if value is None else str(value)


async def member_order(conn: Connection, member_id: str, order_id: uuid.UUID) -> dict[str, Any] | None:
    row = await repo.member_order_row(conn, member_id, order_id)
    return order_to_json(row) if row else None

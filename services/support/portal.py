"""Agent and ops portal use cases: the order view, resends and goodwill adjustments."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

import asyncpg

from chassis.audit import append_audit
from chassis.db import Connection, advisory_lock_key
from chassis.money import money_text
from chassis.outbox import add_event
from contracts.envelope import Envelope
from contracts.orders import OrderState
from contracts.support import SupportResendRequested
from contracts.topics import Topics
from contracts.wallet import EntryType, WalletCreditRequested, WalletReference
from services.support import portal_repository as orders
from services.support import ticket_repository as ticket_repo
from services.support.context import PRODUCER, SupportContext
from services.support.domain.goodwill import (
    AgentActionError,
    check_goodwill,
    most_generous,
    require_justification,
)
from services.support.tickets import TicketNotFound

GOODWILL_KEY_PREFIX = "support-goodwill-"


class OrderNotFound(LookupError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"no order {reference} is known to support (order id or booking id)")


class OrderNotActionable(AgentActionError):
    """The order is in no state for this action (cancelled, no code yet, member unknown)."""


class TicketConcernsAnotherOrder(AgentActionError):
    def __init__(self, ticket_id: str) -> None:
        super().__init__(f"ticket {ticket_id} concerns another order")


@dataclass(frozen=True)
class AgentRequest:
    actor: str
    roles: list[str]
    ticket_id: str | None
    reason: str | None
    idempotency_key: str | None


async def find_order(conn: Connection, reference: str) -> asyncpg.Record:
    order = await orders.find_order(conn, reference)
    if order is None:
        raise OrderNotFound(reference)
    return order


def _voucher_view(order: asyncpg.Record, codes: list[asyncpg.Record]) -> dict[str, Any] | None:
    """The order's current code with its latest status, and the codes it replaced."""
    if order["code_id"] is None:
        return None
    status, remaining, expires_at = "issued", None, order["voucher_expires_at"]
    for code in codes:
        if code["code_id"] == order["code_id"] and code["status_at"] is not None:
            status, remaining, expires_at = code["status"], code["remaining_value"], code["expires_at"]
    return {
        "code_id": order["code_id"],
        "masked_code": order["masked_code"],
        "face_value": money_text(order["face_value"], order["currency"]),
        "currency": order["currency"],
        "status": status,
        "remaining_value": money_text(remaining, order["currency"]),
        "expires_at": expires_at,
        "replaced_codes": [
            {"code_id": c["code_id"], "masked_code": c["masked_code"], "status": c["status"]}
            for c in codes
            if c["code_id"] != order["code_id"] and c["masked_code"] is not None
        ],
    }


async def order_view(conn: Connection, reference: str) -> dict[str, Any]:
    order = await find_order(conn, reference)
    order_id = order["order_id"]
    tickets = await ticket_repo.list_tickets(
        conn, ticket_repo.TicketFilters(order_id=order_id), limit=100, after=None
    )
    return {
        "order_id": order_id,
        "booking_id": order["booking_id"],
        "member_id": order["member_id"],
        "campaign_id": order["campaign_id"],
        "external_ref": order["external_ref"],
        "source": order["source"],
        "state": order["state"],
        "fulfilment_status": order["fulfilment_status"],
        "voucher": _voucher_view(order, await orders.order_codes(conn, order_id)),
        "timeline": await orders.order_timeline(conn, order_id),
        "delivery_attempts": [dict(r) for r in await orders.order_attempts(conn, order_id)],
        "tickets": [
            {"ticket_id": t.ticket_id, "state": t.state, "category": t.category, "priority": t.priority}
            for t in tickets
        ],
        "agent_actions": [dict(r) for r in await orders.order_actions(conn, order_id)],
    }


async def _checked_ticket(conn: Connection, ticket_id: str | None, order_id: uuid.UUID) -> None:
    if ticket_id is None:
        return
    ticket = await ticket_repo.get_ticket(conn, ticket_id, for_update=True)
    if ticket is None:
        raise TicketNotFound(ticket_id)
    if ticket.order_id is not None and ticket.order_id != order_id:
        raise TicketConcernsAnotherOrder(ticket_id)


def _action_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "action_id": row["action_id"],
        "kind": row["kind"],
        "actor": row["actor"],
        "order_id": row["order_id"],
        "member_id": row["member_id"],
        "ticket_id": row["ticket_id"],
        "reason": row["reason"],
        "points": row["points"],
        "requested_at": row["requested_at"],
        "applied_at": row["applied_at"],
    }


async def _record(
    conn: Connection,
    ctx: SupportContext,
    request: AgentRequest,
    *,
    kind: str,
    order: asyncpg.Record,
    points: int | None,
    details: dict[str, Any],
) -> asyncpg.Record:
    now = ctx.clock.now()
    action_id = uuid.uuid4()
    row = await orders.insert_action(
        conn,
        action_id=action_id,
        kind=kind,
        actor=request.actor,
        order_id=order["order_id"],
        member_id=order["member_id"],
        ticket_id=request.ticket_id,
        reason=request.reason,
        points=points,
        idempotency_key=request.idempotency_key or str(action_id),
        at=now,
    )
    audit_details = {
        "action_id": str(action_id),
        "order_id": str(order["order_id"]),
        "booking_id": order["booking_id"],
        "member_id": order["member_id"],
        "ticket_id": request.ticket_id,
        "reason": request.reason,
        **details,
    }
    await append_audit(
        conn,
        actor=request.actor,
        action=f"portal.{kind}_requested",
        subject_type="order",
        subject_id=str(order["order_id"]),
        details=audit_details,
    )
    await _on_timelines(conn, request, f"{kind}_requested", action_id, order["order_id"], now, details)
    return row


async def _on_timelines(
    conn: Connection,
    request: AgentRequest,
    kind: str,
    action_id: uuid.UUID,
    order_id: uuid.UUID,
    at: datetime,
    details: dict[str, Any],
) -> None:
    """The agent's action on the order's timeline and, when it answers a ticket, on the ticket's."""
    await orders.add_timeline(
        conn,
        event_id=action_id,
        order_id=order_id,
        at=at,
        kind=kind,
        details={"actor": request.actor, **details},
    )
    if request.ticket_id is not None:
        await ticket_repo.add_timeline(
            conn,
            request.ticket_id,
            at=at,
            actor=request.actor,
            kind=kind,
            body=request.reason,
            details={"action_id": str(action_id), **details},
        )


async def request_resend(
    conn: Connection,
    ctx: SupportContext,
    reference: str,
    request: AgentRequest,
    delivery_id: uuid.UUID | None,
) -> tuple[dict[str, Any], bool]:
    """Ask delivery to send the order's voucher again; (action, created). A repeated key changes nothing."""
    require_justification(request.ticket_id, request.reason)
    order = await find_order(conn, reference)
    if request.idempotency_key:
        existing = await orders.find_action(conn, request.actor, "resend", request.idempotency_key)
        if existing is not None:
            return _action_view(existing), False
    if order["state"] == OrderState.CANCELLED:
        raise OrderNotActionable("the order is cancelled: delivery never sends for a cancelled order")
    if order["code_id"] is None:
        raise OrderNotActionable("no voucher code was issued to this order yet: there is nothing to resend")
    await _checked_ticket(conn, request.ticket_id, order["order_id"])
    row = await _record(
        conn,
        ctx,
        request,
        kind="resend",
        order=order,
        points=None,
        details={"delivery_id": str(delivery_id) if delivery_id else None},
    )
    resend = SupportResendRequested(
        order_id=order["order_id"],
        delivery_id=delivery_id,
        ticket_id=request.ticket_id,
        member_id=order["member_id"],
        reason=request.reason or f"ticket {request.ticket_id}",
        requested_by=request.actor,
    )
    envelope = Envelope.new(event_type=Topics.SUPPORT_RESEND_REQUESTED, producer=PRODUCER, data=resend)
    await add_event(conn, envelope, key=str(order["order_id"]))
    return _action_view(row), True


def _day_start(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)


async def grant_goodwill(
    conn: Connection, ctx: SupportContext, reference: str, request: AgentRequest, points: int
) -> tuple[dict[str, Any], bool]:
    """Credit goodwill points to the order's member within the caller's limits; (action, created)."""
    require_justification(request.ticket_id, request.reason)
    limit = most_generous(ctx.settings.goodwill_limit_table(), request.roles)
    order = await find_order(conn, reference)
    # One agent's adjustments are counted and added one at a time, so two at once cannot both pass the limit.
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1)", advisory_lock_key("goodwill", "support", request.actor)
    )
    if request.idempotency_key:
        existing = await orders.find_action(conn, request.actor, "goodwill", request.idempotency_key)
        if existing is not None:
            return _action_view(existing), False
    if order["member_id"] is None:
        raise OrderNotActionable("the order's member is not known yet")
    await _checked_ticket(conn, request.ticket_id, order["order_id"])
    granted = await orders.goodwill_granted_since(conn, request.actor, _day_start(ctx.clock.now()))
    check_goodwill(limit, points=points, granted_today=granted)
    row = await _record(
        conn, ctx, request, kind="goodwill", order=order, points=points, details={"points": points}
    )
    credit = WalletCreditRequested(
        member_id=order["member_id"],
        amount=points,
        idempotency_key=f"{GOODWILL_KEY_PREFIX}{row['action_id']}",
        entry_type=EntryType.MANUAL_ADJUSTMENT,
        reason_code="goodwill",
        reference=WalletReference(
            order_id=order["order_id"], booking_id=order["booking_id"], ticket_id=request.ticket_id
        ),
        requested_by=request.actor,
    )
    envelope = Envelope.new(event_type=Topics.WALLET_CREDIT_REQUESTED, producer=PRODUCER, data=credit)
    await add_event(conn, envelope, key=order["member_id"])
    return _action_view(row), True

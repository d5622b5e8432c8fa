"""Kafka in: the portal's read model, automatic missing-delivery tickets, the wallet's answers."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from chassis.consumer import Subscription
from chassis.db import Connection
from contracts.delivery import DeliveryFailed, DeliverySucceeded
from contracts.envelope import Envelope
from contracts.orders import OrderStateChanged
from contracts.support import TicketCategory
from contracts.topics import Topics
from contracts.vouchers import AnyVoucherIssued, VoucherIssued, VoucherStatusChanged
from contracts.wallet import WalletTransactionRecorded
from services.support import portal_repository as orders
from services.support import ticket_repository as ticket_repo
from services.support import tickets
from services.support.batching import batched
from services.support.context import DELIVERY_MONITOR, SupportContext
from services.support.domain.tickets import TicketState
from services.support.portal import GOODWILL_KEY_PREFIX


async def on_order_state_changed(conn: Connection, envelope: Envelope[Any]) -> None:
    data: OrderStateChanged = envelope.data
    await orders.upsert_order_state(conn, data, envelope.occurred_at)
    details = data.model_dump(
        mode="json", include={"state", "previous_state", "fulfilment_status", "reason", "actor"}
    )
    await _add_to_timeline(conn, envelope, data.order_id, "order_state_changed", details)
    await ticket_repo.attach_member_to_order_tickets(conn, data.order_id, data.member_id, data.booking_id)


async def on_voucher_issued(conn: Connection, envelope: Envelope[Any]) -> None:
    data: AnyVoucherIssued = envelope.data
    # Only the masked code is kept: the clear one never reaches this service's tables or logs.
    await orders.upsert_voucher(conn, data, envelope.occurred_at)
    details = data.model_dump(mode="json", include={"code_id", "masked_code"})
    await _add_to_timeline(conn, envelope, data.order_id, "voucher_issued", details)
    await orders.record_issued_code(conn, data, envelope.occurred_at)


async def on_voucher_status_changed(conn: Connection, envelope: Envelope[Any]) -> None:
    data: VoucherStatusChanged = envelope.data
    if not _is_orders_code(data):
        return
    assert data.order_id is not None
    await orders.record_code_status(conn, data, envelope.occurred_at)
    await _add_to_timeline(
        conn,
        envelope,
        data.order_id,
        "code_status_changed",
        {
            "code_id": str(data.code_id),
            "status": data.status.value,
            "previous_status": data.previous_status.value if data.previous_status else None,
            "reason": data.reason,
            "expires_at": data.expires_at.isoformat() if data.expires_at else None,
            "remaining_value": None if data.remaining_value is None else str(data.remaining_value),
        },
    )


async def on_delivery_succeeded(conn: Connection, envelope: Envelope[Any]) -> None:
    data: DeliverySucceeded = envelope.data
    await _record_delivery_outcome(conn, envelope, data, "succeeded", failure={})


async def on_wallet_transaction(conn: Connection, envelope: Envelope[Any]) -> None:
    data: WalletTransactionRecorded = envelope.data
    if not data.idempotency_key.startswith(GOODWILL_KEY_PREFIX):
        return
    try:
        action_id = uuid.UUID(data.idempotency_key.removeprefix(GOODWILL_KEY_PREFIX))
    except ValueError:
        return
    action = await orders.mark_goodwill_applied(conn, action_id, data.entry_id, envelope.occurred_at)
    if action is None:
        return
    details = {"action_id": str(action_id), "points": data.amount, "balance_after": data.balance_after}
    await _add_to_timeline(conn, envelope, action["order_id"], "goodwill_applied", details)
    if action["ticket_id"] is not None:
        await ticket_repo.add_timeline(
            conn,
            action["ticket_id"],
            at=envelope.occurred_at,
            actor="service:wallet",
            kind="goodwill_applied",
            details=details,
        )


async def on_delivery_failed(ctx: SupportContext, conn: Connection, envelope: Envelope[Any]) -> None:
    """A final failure also opens (or notes on) the order's missing-delivery ticket."""
    data: DeliveryFailed = envelope.data
    failure = {"reason_code": data.reason_code, "retryable": data.retryable, "final": data.final}
    details = await _record_delivery_outcome(conn, envelope, data, "failed", failure=failure)
    if data.final:
        await _open_missing_delivery_ticket(conn, ctx, data, details)


def subscriptions(ctx: SupportContext) -> list[Subscription]:
    on_delivery_failed_ = partial(on_delivery_failed, ctx)
    return [
        # The portal's read model: writes only, sent a batch at a time (see `batching`).
        Subscription(
            "order-state",
            Topics.ORDER_STATE_CHANGED,
            OrderStateChanged,
            on_order_state_changed,
            handle_batch=batched(on_order_state_changed),
        ),
        Subscription(
            "voucher-issued",
            Topics.VOUCHER_ISSUED,
            VoucherIssued,
            on_voucher_issued,
            handle_batch=batched(on_voucher_issued),
        ),
        Subscription(
            "voucher-status",
            Topics.VOUCHER_STATUS_CHANGED,
            VoucherStatusChanged,
            on_voucher_status_changed,
            relevant=_is_orders_code,
            handle_batch=batched(on_voucher_status_changed),
        ),
        Subscription(
            "delivery-succeeded",
            Topics.DELIVERY_SUCCEEDED,
            DeliverySucceeded,
            on_delivery_succeeded,
            handle_batch=batched(on_delivery_succeeded),
        ),
        # A final failure opens or reopens a ticket: that event runs on its own, in its turn.
        Subscription(
            "delivery-failed",
            Topics.DELIVERY_FAILED,
            DeliveryFailed,
            on_delivery_failed_,
            handle_batch=batched(on_delivery_failed_, alone=lambda envelope: bool(envelope.data.final)),
        ),
        Subscription(
            "wallet-transactions",
            Topics.WALLET_TRANSACTION_RECORDED,
            WalletTransactionRecorded,
            on_wallet_transaction,
        ),
    ]


def _is_orders_code(data: VoucherStatusChanged) -> bool:
    """Test codes and codes held by no order are not in any order's view."""
    return not data.test and data.order_id is not None


async def _record_delivery_outcome(
    conn: Connection,
    envelope: Envelope[Any],
    data: DeliverySucceeded | DeliveryFailed,
    outcome: str,
    *,
    failure: dict[str, Any],
) -> dict[str, Any]:
    """One delivery attempt on the portal's read model and the order's timeline; returns its details."""
    await orders.touch_order(conn, data.order_id, envelope.occurred_at)
    await orders.add_attempt(conn, envelope.event_id, data, outcome, envelope.occurred_at, **failure)
    details = {
        "delivery_id": str(data.delivery_id),
        "attempt": data.attempt,
        "channel": data.channel.value,
        **failure,
    }
    await _add_to_timeline(conn, envelope, data.order_id, f"delivery_{outcome}", details)
    return details


async def _add_to_timeline(
    conn: Connection, envelope: Envelope[Any], order_id: uuid.UUID, kind: str, details: dict[str, Any]
) -> None:
    """The event on its order's timeline, once per event id."""
    await orders.add_timeline(
        conn,
        event_id=envelope.event_id,
        order_id=order_id,
        at=envelope.occurred_at,
        kind=kind,
        details=details,
    )


async def _open_missing_delivery_ticket(
    conn: Connection, ctx: SupportContext, data: DeliveryFailed, details: dict[str, Any]
) -> None:
    """One automatic ticket per order: a later final failure of the same order is noted on it instead,
    and reopens it if it was resolved or closed meanwhile (the resend did not help)."""
    existing = await ticket_repo.auto_ticket_of_order(conn, data.order_id)
    if existing is None:
        order = await orders.find_order(conn, str(data.order_id))
        opened = await tickets.open_ticket(
            conn,
            ctx,
            tickets.Caller(actor=DELIVERY_MONITOR),
            category=TicketCategory.MISSING_DELIVERY,
            priority=ctx.settings.auto_ticket_priority,
            description=(
                f"Delivery by {data.channel.value} failed for good after attempt {data.attempt}"
                f" ({data.reason_code}); the member has not received the voucher."
            ),
            member_id=order["member_id"] if order else None,
            order_id=data.order_id,
            booking_id=order["booking_id"] if order else None,
            origin="delivery_failed",
        )
        if opened is not None:
            return
        existing = await ticket_repo.auto_ticket_of_order(conn, data.order_id)
        assert existing is not None
    await ticket_repo.add_timeline(
        conn,
        existing.ticket_id,
        at=ctx.clock.now(),
        actor=DELIVERY_MONITOR,
        kind="delivery_failed_again",
        details=details,
    )
    if existing.state in (TicketState.RESOLVED, TicketState.CLOSED):
        await tickets.change_state(
            conn,
            ctx,
            tickets.Caller(actor=DELIVERY_MONITOR),
            existing.ticket_id,
            TicketState.OPEN,
            "delivery failed for good again",
        )

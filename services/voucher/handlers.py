"""Kafka in: `order.state_changed` drives issuance, release and delivery bookkeeping."""

from __future__ import annotations

from typing import Any

from chassis.consumer import Subscription
from chassis.db import Connection
from contracts.envelope import Envelope
from contracts.orders import FulfilmentStatus, OrderState, OrderStateChanged
from contracts.topics import Topics

from . import issuance
from .crypto import CodeVault


def order_subscription(vault: CodeVault, *, topic: str = Topics.ORDER_STATE_CHANGED) -> Subscription:
    async def on_order_state_changed(conn: Connection, envelope: Envelope[Any]) -> None:
        order: OrderStateChanged = envelope.data
        if order.state is OrderState.PENDING and order.fulfilment_status is FulfilmentStatus.AWAITING_VOUCHER:
            request = issuance.OrderRequest(
                order_id=order.order_id,
                campaign_id=order.campaign_id,
                member_id=order.member_id,
                value=order.amount,
                correlation_id=envelope.correlation_id,
            )
            await issuance.issue(conn, vault, request, cause=envelope)
        elif order.state is OrderState.CANCELLED:
            await issuance.release(
                conn, order.order_id, cause=envelope, reason=order.reason or "order cancelled"
            )
        elif order.state is OrderState.COMPLETED:
            await issuance.mark_delivery(conn, order.order_id, delivered=True)
        elif order.fulfilment_status is FulfilmentStatus.DELIVERY_FAILED:
            await issuance.mark_delivery(conn, order.order_id, delivered=False)

    return Subscription(
        name="issuance",
        topic=topic,
        payload=OrderStateChanged,
        handle=on_order_state_changed,
        event_type=Topics.ORDER_STATE_CHANGED,
    )

"""Kafka in: `order.state_changed` drives issuance, release and delivery bookkeeping.

The subscription has both an event-by-event handler and a batch handler with the same effect: the
batch handler serves consecutive pending orders with `batch_issuance.issue_many` and records delivery
outcomes with one statement each, keeping every order's events in their order (see `_Batch`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from chassis.consumer import Subscription
from chassis.db import Connection
from contracts.envelope import Envelope
from contracts.orders import FulfilmentStatus, OrderState, OrderStateChanged
from contracts.topics import Topics

from . import batch_issuance, issuance
from .crypto import CodeVault


def _issue_request(envelope: Envelope[Any]) -> issuance.OrderRequest | None:
    order: OrderStateChanged = envelope.data
    if order.state is OrderState.PENDING and order.fulfilment_status is FulfilmentStatus.AWAITING_VOUCHER:
        return issuance.OrderRequest(
            order_id=order.order_id,
            campaign_id=order.campaign_id,
            member_id=order.member_id,
            value=order.amount,
            correlation_id=envelope.correlation_id,
            test=order.test,
        )
    return None


def _delivery_outcome(order: OrderStateChanged) -> bool | None:
    """True: delivered (completed); False: delivery failed; None: not a delivery outcome."""
    if order.state is OrderState.CANCELLED:
        return None
    if order.state is OrderState.COMPLETED:
        return True
    if order.fulfilment_status is FulfilmentStatus.DELIVERY_FAILED:
        return False
    return None


def _acts_on(order: OrderStateChanged) -> bool:
    """Issuance, release and delivery bookkeeping: the states the handlers do anything with."""
    is_issue_request = (
        order.state is OrderState.PENDING and order.fulfilment_status is FulfilmentStatus.AWAITING_VOUCHER
    )
    return is_issue_request or order.state is OrderState.CANCELLED or _delivery_outcome(order) is not None


class _Batch:
    """Pending issuances and delivery outcomes gathered from a run of events, applied together.

    Issuing to one order and recording another order's delivery touch different rows, so they
    commute; events of the same order, and issuances and releases among themselves, keep their order:
    an event that would overtake one of them flushes what is gathered first.
    """

    def __init__(self, conn: Connection, vault: CodeVault) -> None:
        self._conn = conn
        self._vault = vault
        self._issue: list[batch_issuance.Pending] = []
        self._outcomes: dict[uuid.UUID, bool] = {}

    async def add(self, envelope: Envelope[Any]) -> None:
        order: OrderStateChanged = envelope.data
        request = _issue_request(envelope)
        if request is not None:
            if order.order_id in self._outcomes:
                await self.flush()
            self._issue.append(batch_issuance.Pending(request, envelope))
            return
        outcome = _delivery_outcome(order)
        if outcome is not None:
            if order.order_id in self._outcomes:
                await self.flush()
            self._outcomes[order.order_id] = outcome  # issuances gathered so far are applied before it
            return
        if order.state is OrderState.CANCELLED:
            await self.flush()
            await issuance.release(
                self._conn, order.order_id, cause=envelope, reason=order.reason or "order cancelled"
            )

    async def flush(self) -> None:
        if self._issue:
            await batch_issuance.issue_many(self._conn, self._vault, self._issue)
        if self._outcomes:
            await issuance.mark_deliveries(self._conn, self._outcomes)
        self._issue, self._outcomes = [], {}


def order_subscription(vault: CodeVault, *, topic: str = Topics.ORDER_STATE_CHANGED) -> Subscription:
    async def on_order_state_changed(conn: Connection, envelope: Envelope[Any]) -> None:
        order: OrderStateChanged = envelope.data
        request = _issue_request(envelope)
        if request is not None:
            await issuance.issue(conn, vault, request, cause=envelope)
        elif order.state is OrderState.CANCELLED:
            await issuance.release(
                conn, order.order_id, cause=envelope, reason=order.reason or "order cancelled"
            )
        elif (outcome := _delivery_outcome(order)) is not None:
            await issuance.mark_delivery(conn, order.order_id, delivered=outcome)

    async def on_order_state_changes(conn: Connection, envelopes: Sequence[Envelope[Any]]) -> None:
        batch = _Batch(conn, vault)
        for envelope in envelopes:
            await batch.add(envelope)
        await batch.flush()

    return Subscription(
        name="issuance",
        topic=topic,
        payload=OrderStateChanged,
        handle=on_order_state_changed,
        event_type=Topics.ORDER_STATE_CHANGED,
        handle_batch=on_order_state_changes,
        relevant=_acts_on,
    )

"""Order use cases: create (IPA, storefront), follow voucher and delivery events, cancel. Each runs in
the caller's transaction and writes its events to the outbox in that same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from chassis.audit import append_audit
from chassis.db import Connection
from chassis.models import model_from
from chassis.outbox import OutgoingEvent, add_to_outbox
from contracts.delivery import DeliveryRequested
from contracts.envelope import Envelope
from contracts.orders import OrderStateChanged
from contracts.topics import Topics

from . import repository
from .domain import CompletedOrderCannotBeCancelled, Decision, OrderEvent, OrderNotFound, cancel, decide
from .metrics import ORDER_EVENTS
from .repository import NewOrder, OrderRow

log = structlog.get_logger(__name__)
PRODUCER = "order"


@dataclass(frozen=True)
class Recipient:
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str = "en"


@dataclass(frozen=True)
class Cause:
    """Why something happens: who asked and which event (if any) started it."""

    actor: str
    envelope: Envelope[Any] | None = None
    correlation_id: str | None = None

    @property
    def event_id(self) -> uuid.UUID | None:
        return self.envelope.event_id if self.envelope else None

    def new_envelope(self, event_type: str, data: Any) -> Envelope[Any]:
        if self.envelope is not None:
            return self.envelope.caused(event_type=event_type, producer=PRODUCER, data=data)
        return Envelope.new(
            event_type=event_type, producer=PRODUCER, data=data, correlation_id=self.correlation_id
        )


def state_changed(
    order: OrderRow, decision: Decision, *, reason: str | None, actor: str, created: bool = False
) -> OrderStateChanged:
    return model_from(
        OrderStateChanged,
        order,
        state=decision.after.state,
        previous_state=None if created else decision.before.state,
        fulfilment_status=decision.after.fulfilment,
        previous_fulfilment_status=None if created else decision.before.fulfilment,
        reason=reason,
        actor=actor,
    )


async def create_orders(
    conn: Connection,
    orders: Sequence[tuple[NewOrder, Recipient, Cause]],
    *,
    request_delivery: bool = True,
    also: Sequence[OutgoingEvent] = (),
) -> list[OrderRow]:
    """New pending orders; each publishes `order.state_changed` and (unless told otherwise, for an
    order cancelled at once) `delivery.requested`. `also`: the caller's events about the same change,
    written with these in one statement."""
    if not orders:
        await add_to_outbox(conn, also)
        return []
    rows = await repository.insert_orders(
        conn,
        [o for o, _, _ in orders],
        actors=[c.actor for _, _, c in orders],
        cause_event_ids=[c.event_id for _, _, c in orders],
    )
    events: list[OutgoingEvent] = []
    for row, (new, recipient, cause) in zip(rows, orders, strict=True):
        key = str(row.order_id)
        created = Decision(row.status, row.status, applied=True)
        events.append(
            OutgoingEvent(
                key,
                cause.new_envelope(
                    Topics.ORDER_STATE_CHANGED,
                    state_changed(row, created, reason="created", actor=cause.actor, created=True),
                ),
            )
        )
        if not request_delivery:
            continue
        events.append(
            OutgoingEvent(
                key,
                cause.new_envelope(
                    Topics.DELIVERY_REQUESTED,
                    DeliveryRequested(
                        order_id=row.order_id,
                        booking_id=row.booking_id,
                        member_id=row.member_id,
                        campaign_id=row.campaign_id,
                        channel=new.channel,
                        name=recipient.name,
                        email=recipient.email,
                        phone=recipient.phone,
                        locale=recipient.locale,
                        test=row.test,
                    ),
                ),
            )
        )
    await add_to_outbox(conn, [*events, *also])
    return rows


async def apply(
    conn: Connection,
    order: OrderRow,
    decision: Decision,
    *,
    event: str,
    cause: Cause,
    reason: str | None = None,
    needs_attention: bool | None = None,
) -> Decision:
    await repository.record_decision(
        conn,
        order,
        decision,
        event=event,
        actor=cause.actor,
        cause_event_id=cause.event_id,
        reason=reason,
        needs_attention=needs_attention,
    )
    _count(order, decision, event)
    if decision.changed:
        await add_to_outbox(conn, [_state_changed_event(order, decision, cause, reason)])
    return decision


def _count(order: OrderRow, decision: Decision, event: str) -> None:
    ORDER_EVENTS.labels(
        event, "applied" if decision.applied else ("late" if decision.late else "stale")
    ).inc()
    if decision.late:
        log.warning(
            "order_late_event", order_id=str(order.order_id), order_event=event, state=str(order.status.state)
        )


def _state_changed_event(
    order: OrderRow, decision: Decision, cause: Cause, reason: str | None
) -> OutgoingEvent:
    return OutgoingEvent(
        str(order.order_id),
        cause.new_envelope(
            Topics.ORDER_STATE_CHANGED, state_changed(order, decision, reason=reason, actor=cause.actor)
        ),
    )


@dataclass(frozen=True)
class Followed:
    """One voucher or delivery event for `follow_many`."""

    order_id: uuid.UUID
    event: OrderEvent
    cause: Cause
    reason: str | None = None


async def follow_many(conn: Connection, items: Sequence[Followed]) -> list[Decision | None]:
    """`follow` for each item in turn, with a fixed number of statements whatever their number: the
    orders are locked together, decided in order (an order met twice sees its first decision), and
    the rows, timeline and events are written set-based."""
    orders = await repository.lock_orders(conn, [i.order_id for i in items])
    entries: list[repository.Entry] = []
    events: list[OutgoingEvent] = []
    decisions: list[Decision | None] = []
    for item in items:
        order = orders.get(item.order_id)
        if order is None:
            log.info(
                "order_event_for_unknown_order", order_id=str(item.order_id), order_event=str(item.event)
            )
            decisions.append(None)
            continue
        decision = decide(order.status, item.event)
        attention = (item.event is OrderEvent.DELIVERY_FAILED_FINAL) if decision.applied else None
        entries.append(
            repository.Entry(
                order=order,
                decision=decision,
                event=str(item.event),
                actor=item.cause.actor,
                cause_event_id=item.cause.event_id,
                reason=item.reason,
                needs_attention=attention,
            )
        )
        _count(order, decision, str(item.event))
        if decision.changed:
            events.append(_state_changed_event(order, decision, item.cause, item.reason))
        orders[item.order_id] = replace(order, status=decision.after)
        decisions.append(decision)
    await repository.record_decisions(conn, entries)
    await add_to_outbox(conn, events)
    return decisions


async def cancel_order(
    conn: Connection,
    *,
    cause: Cause,
    reason: str,
    order_id: uuid.UUID | None = None,
    booking_id: str | None = None,
    external_ref: str | None = None,
    refuse_completed: bool = True,
) -> tuple[OrderRow, Decision]:
    """Cancel a pending order; an already cancelled order stays as it is, an unknown one raises
    `OrderNotFound`. For a completed order it raises `CompletedOrderCannotBeCancelled`, or with
    `refuse_completed=False` records the refused request on the timeline."""
    order = await repository.lock_order(
        conn, order_id=order_id, booking_id=booking_id, external_ref=external_ref
    )
    if order is None:
        raise OrderNotFound(str(order_id or booking_id or external_ref))
    try:
        decision = cancel(order.status)
    except CompletedOrderCannotBeCancelled:
        if refuse_completed:
            raise
        decision = Decision(order.status, order.status, applied=False, late=True, note="refused: completed")
    await apply(
        conn,
        order,
        decision,
        event=str(OrderEvent.CANCEL_REQUESTED),
        cause=cause,
        reason=reason,
        needs_attention=False,
    )
    return order, decision


async def audit_order(
    conn: Connection, *, actor: str, action: str, order_id: uuid.UUID | None, details: dict[str, Any]
) -> None:
    """Put what someone did to one order (placed, cancelled) in the audit log."""
    await append_audit(
        conn, actor=actor, action=action, subject_type="order", subject_id=str(order_id), details=details
    )

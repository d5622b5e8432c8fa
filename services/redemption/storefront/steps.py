"""Carrying out a saga decision: save the new state, its commands as outbox events and its record,
all in the caller's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from chassis.db import Connection
from chassis.models import model_from
from chassis.outbox import OutgoingEvent, add_to_outbox
from contracts.envelope import Envelope, EventData
from contracts.orders import OrderCancelRequested, OrderCreateRequested
from contracts.redemption import RedemptionKind, RedemptionStatus
from contracts.registry import for_payload
from contracts.wallet import EntryType, WalletCreditRequested, WalletDebitRequested, WalletReference
from services.redemption.records.domain import Record
from services.redemption.records.repository import write_record
from services.redemption.settings import PRODUCER
from services.redemption.storefront import repository as repo
from services.redemption.storefront.domain import (
    REDRIVEN_STATES,
    CancelOrder,
    Command,
    Decision,
    RequestDebit,
    RequestOrder,
    RequestRefund,
    Saga,
    SagaState,
    debit_key,
    retry_delay_s,
)

log = structlog.get_logger(__name__)
SERVICE_ACTOR = "service:redemption"


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float
    cap_s: float
    max_order_attempts: int

    def next_attempt_at(self, saga: Saga, now: datetime) -> datetime | None:
        if saga.state not in REDRIVEN_STATES:
            return None
        return now + timedelta(seconds=retry_delay_s(saga.attempts, base_s=self.base_s, cap_s=self.cap_s))


def _command_payload(row: repo.SagaRow, saga: Saga, command: Command) -> EventData:
    """The payload of a saga command; its topic and key are the registry's for that payload."""
    reference = WalletReference(
        redemption_id=saga.redemption_id, order_id=saga.order_id, booking_id=saga.booking_id
    )
    match command:
        case RequestDebit(key):
            return WalletDebitRequested(
                member_id=row.member_id,
                amount=row.points,
                idempotency_key=key,
                entry_type=EntryType.REDEMPTION,
                reason_code="storefront_redemption",
                reference=reference,
                requested_by=row.requested_by,
            )
        case RequestOrder(key):
            # The reward, its price and the member as the saga holds them; the contact as given.
            contact: dict[str, Any] = dict(row.contact or {})
            return model_from(
                OrderCreateRequested, row, redemption_id=saga.redemption_id, idempotency_key=key, **contact
            )
        case RequestRefund(key):
            # Linked to the debit it gives back: same redemption, and the debit's key as external_ref.
            refund_reference = reference.model_copy(update={"external_ref": debit_key(saga.redemption_id)})
            return WalletCreditRequested(
                member_id=row.member_id,
                amount=row.points,
                idempotency_key=key,
                entry_type=EntryType.REFUND,
                reason_code="storefront_refund",
                reference=refund_reference,
                requested_by=SERVICE_ACTOR,
            )
        case CancelOrder(order_id, reason):
            return OrderCancelRequested(order_id=order_id, reason=reason, requested_by=SERVICE_ACTOR)
    raise TypeError(f"not a saga command: {command!r}")


_RECORD_STATUS = {
    SagaState.DEBIT_REQUESTED: RedemptionStatus.PENDING,
    SagaState.ORDER_REQUESTED: RedemptionStatus.PENDING,
    SagaState.ORDER_PENDING: RedemptionStatus.PENDING,
    SagaState.REFUND_REQUESTED: RedemptionStatus.FAILED,
    SagaState.COMPLETED: RedemptionStatus.SUCCESSFUL,
    SagaState.FAILED: RedemptionStatus.FAILED,
    SagaState.REFUNDED: RedemptionStatus.FAILED,
}


def storefront_record(row: repo.SagaRow, saga: Saga) -> Record:
    return Record(
        record_id=saga.redemption_id,
        kind=RedemptionKind.STOREFRONT,
        status=_RECORD_STATUS[saga.state],
        redeemed_at=row.created_at,
        member_id=row.member_id,
        order_id=saga.order_id,
        redemption_id=saga.redemption_id,
        channel="storefront",
        points=row.points,
        amount=row.amount,
        currency=row.currency,
        reason=saga.reason,
    )


async def carry_out(
    conn: Connection,
    row: repo.SagaRow,
    decision: Decision,
    *,
    cause: str,
    policy: RetryPolicy,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> None:
    before, after = row.saga, decision.saga
    if decision.anomaly:
        log.warning(
            "storefront_saga_anomaly", redemption_id=str(after.redemption_id), anomaly=decision.anomaly
        )
    if not decision.changed_from(before) and not decision.commands:
        return
    now = datetime.now(UTC)
    await repo.save_saga(
        conn,
        before,
        after,
        cause=cause,
        next_attempt_at=policy.next_attempt_at(after, now),
        forget_contact=after.state not in (SagaState.DEBIT_REQUESTED, SagaState.ORDER_REQUESTED),
    )
    if after.state in (SagaState.FAILED, SagaState.REFUNDED) and before.state is not after.state:
        await repo.give_back_stock(conn, row.reward_id)
    await emit(conn, row, after, decision.commands, correlation_id or row.correlation_id, causation_id)
    await write_record(
        conn,
        storefront_record(row, after),
        correlation_id=correlation_id or row.correlation_id,
        causation_id=causation_id,
    )


async def emit(
    conn: Connection,
    row: repo.SagaRow,
    saga: Saga,
    commands: tuple[Command, ...],
    correlation_id: str,
    causation_id: str | None,
) -> None:
    events = []
    for command in commands:
        data = _command_payload(row, saga, command)
        spec = for_payload(data)
        envelope = Envelope.new(
            event_type=spec.name,
            producer=PRODUCER,
            data=data,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        events.append(OutgoingEvent(key=spec.key_of(data), envelope=envelope))
    await add_to_outbox(conn, events)


def new_redemption_id() -> uuid.UUID:
    return uuid.uuid4()

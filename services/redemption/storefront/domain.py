"""The storefront saga as a pure state machine: points → order → completed, or refunded.

debit_requested ──debit recorded──▶ order_requested ──order opened──▶ order_pending ──completed──▶ completed
      │                                   │  (gave up creating it)          │ cancelled
      └─debit rejected─▶ failed           └──────────────┬──────────────────┘
                                                          ▼
                                               refund_requested ──refund recorded──▶ refunded

Every command carries a deterministic idempotency key derived from the redemption id, so repeating a
step (redelivery, timeout re-drive, crash and restart) asks the wallet or the order service for the
same thing again and they apply it once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from enum import StrEnum


class SagaState(StrEnum):
    DEBIT_REQUESTED = "debit_requested"
    ORDER_REQUESTED = "order_requested"
    ORDER_PENDING = "order_pending"
    COMPLETED = "completed"
    FAILED = "failed"
    REFUND_REQUESTED = "refund_requested"
    REFUNDED = "refunded"


TERMINAL_STATES = frozenset({SagaState.COMPLETED, SagaState.FAILED, SagaState.REFUNDED})
REDRIVEN_STATES = frozenset(
    {SagaState.DEBIT_REQUESTED, SagaState.ORDER_REQUESTED, SagaState.REFUND_REQUESTED}
)


def debit_key(redemption_id: uuid.UUID) -> str:
    return f"redemption:{redemption_id}:debit"


def refund_key(redemption_id: uuid.UUID) -> str:
    return f"redemption:{redemption_id}:refund"


def order_key(redemption_id: uuid.UUID) -> str:
    return f"redemption:{redemption_id}:order"


def redemption_of_key(key: str) -> tuple[uuid.UUID, str] | None:
    """(redemption id, step) of a key this saga made, None for anyone else's key."""
    parts = key.split(":")
    if len(parts) != 3 or parts[0] != "redemption" or parts[2] not in ("debit", "refund", "order"):
        return None
    try:
        return uuid.UUID(parts[1]), parts[2]
    except ValueError:
        return None


# What happened (inputs) ------------------------------------------------------------------------


@dataclass(frozen=True)
class DebitRecorded:
    entry_id: uuid.UUID


@dataclass(frozen=True)
class DebitRejected:
    reason: str


@dataclass(frozen=True)
class OrderOpened:
    order_id: uuid.UUID
    booking_id: str | None = None


@dataclass(frozen=True)
class OrderCompleted:
    order_id: uuid.UUID
    booking_id: str | None = None


@dataclass(frozen=True)
class OrderCancelled:
    order_id: uuid.UUID
    reason: str | None = None
    booking_id: str | None = None


@dataclass(frozen=True)
class RefundRecorded:
    entry_id: uuid.UUID


SagaEvent = DebitRecorded | DebitRejected | OrderOpened | OrderCompleted | OrderCancelled | RefundRecorded


# What to ask for (commands) --------------------------------------------------------------------


@dataclass(frozen=True)
class RequestDebit:
    key: str


@dataclass(frozen=True)
class RequestOrder:
    key: str


@dataclass(frozen=True)
class RequestRefund:
    key: str


@dataclass(frozen=True)
class CancelOrder:
    order_id: uuid.UUID
    reason: str


Command = RequestDebit | RequestOrder | RequestRefund | CancelOrder


@dataclass(frozen=True)
class Saga:
    redemption_id: uuid.UUID
    state: SagaState = SagaState.DEBIT_REQUESTED
    debit_entry_id: uuid.UUID | None = None
    refund_entry_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    booking_id: str | None = None
    reason: str | None = None
    attempts: int = 0

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class Decision:
    saga: Saga
    commands: tuple[Command, ...] = ()
    anomaly: str | None = None
    """Something that should not happen (and changed nothing), for operators to look at."""

    def changed_from(self, before: Saga) -> bool:
        return self.saga != before


def start(redemption_id: uuid.UUID) -> Decision:
    """A new redemption: ask the wallet for the points."""
    return Decision(Saga(redemption_id), (RequestDebit(debit_key(redemption_id)),))


def _to(saga: Saga, state: SagaState, **changes: object) -> Saga:
    return replace(saga, state=state, attempts=0, **changes)  # type: ignore[arg-type]


def _refund(saga: Saga, reason: str | None, **changes: object) -> Decision:
    after = _to(saga, SagaState.REFUND_REQUESTED, reason=reason, **changes)
    return Decision(after, (RequestRefund(refund_key(saga.redemption_id)),))


def apply(saga: Saga, event: SagaEvent) -> Decision:
    """The saga after `event`, and what to ask for next. Repeated and late events change nothing."""
    state = saga.state
    match event:
        case DebitRecorded(entry_id):
            if saga.debit_entry_id is not None:
                if saga.debit_entry_id == entry_id:
                    return Decision(saga)
                return Decision(saga, anomaly="a second debit entry for one redemption")
            if state is SagaState.DEBIT_REQUESTED:
                after = _to(saga, SagaState.ORDER_REQUESTED, debit_entry_id=entry_id)
                return Decision(after, (RequestOrder(order_key(saga.redemption_id)),))
            if state is SagaState.FAILED:
                # The wallet took the points after all: give them back rather than keep them.
                return _refund(saga, "debit_recorded_after_rejection", debit_entry_id=entry_id)
            return Decision(saga, anomaly=f"debit recorded while {state}")
        case DebitRejected(reason):
            if state is SagaState.DEBIT_REQUESTED:
                return Decision(_to(saga, SagaState.FAILED, reason=reason))
            return Decision(saga)
        case OrderOpened(order_id, booking_id):
            return _order_opened(saga, order_id, booking_id)
        case OrderCompleted(order_id, booking_id):
            if state in (SagaState.ORDER_REQUESTED, SagaState.ORDER_PENDING):
                return Decision(
                    _to(
                        saga, SagaState.COMPLETED, order_id=order_id, booking_id=booking_id or saga.booking_id
                    )
                )
            if state in (SagaState.REFUND_REQUESTED, SagaState.REFUNDED):
                return Decision(saga, anomaly="order completed after the redemption was refunded")
            return Decision(saga)
        case OrderCancelled(order_id, reason, booking_id):
            if state in (SagaState.ORDER_REQUESTED, SagaState.ORDER_PENDING):
                return _refund(
                    saga,
                    reason or "order_cancelled",
                    order_id=order_id,
                    booking_id=booking_id or saga.booking_id,
                )
            return Decision(saga)
        case RefundRecorded(entry_id):
            if saga.refund_entry_id is not None:
                if saga.refund_entry_id == entry_id:
                    return Decision(saga)
                return Decision(saga, anomaly="a second refund entry for one redemption")
            if state is SagaState.REFUND_REQUESTED:
                return Decision(_to(saga, SagaState.REFUNDED, refund_entry_id=entry_id))
            return Decision(saga, anomaly=f"refund recorded while {state}")
    raise TypeError(f"not a saga event: {event!r}")


def _order_opened(saga: Saga, order_id: uuid.UUID, booking_id: str | None) -> Decision:
    state = saga.state
    if state is SagaState.ORDER_REQUESTED:
        return Decision(_to(saga, SagaState.ORDER_PENDING, order_id=order_id, booking_id=booking_id))
    if state in (SagaState.REFUND_REQUESTED, SagaState.REFUNDED) and saga.order_id is None:
        # We gave up waiting for this order and refunded: it must not be fulfilled now.
        after = replace(saga, order_id=order_id, booking_id=booking_id)
        return Decision(after, (CancelOrder(order_id, "storefront redemption already refunded"),))
    return Decision(saga)


def redrive(saga: Saga, *, max_order_attempts: int) -> Decision:
    """A step got no answer in time: ask again with the same key, or give up on the order and refund."""
    state = saga.state
    again = replace(saga, attempts=saga.attempts + 1)
    if state is SagaState.DEBIT_REQUESTED:
        return Decision(again, (RequestDebit(debit_key(saga.redemption_id)),))
    if state is SagaState.ORDER_REQUESTED:
        if saga.attempts >= max_order_attempts:
            return _refund(saga, "order_not_created")
        return Decision(again, (RequestOrder(order_key(saga.redemption_id)),))
    if state is SagaState.REFUND_REQUESTED:
        return Decision(again, (RequestRefund(refund_key(saga.redemption_id)),))
    return Decision(saga)


def retry_delay_s(attempts: int, *, base_s: float, cap_s: float) -> float:
    """Exponential backoff between re-drives of one step."""
    return float(min(base_s * (2 ** min(attempts, 20)), cap_s))

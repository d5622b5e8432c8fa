"""The voucher order lifecycle: pure rules, no I/O.

An order is `pending` (with a fulfilment status) until it is `completed` or `cancelled`; both are
terminal. `decide` says what one event does to an order in a given status. Events that arrive after a
terminal state, or that no longer fit (a stale `voucher.issue_failed` after the code was issued), are
recorded on the timeline but never applied.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

from contracts.orders import FulfilmentStatus, OrderState

BOOKING_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Digits and capitals without 0/O, 1/I/L and U (read as V): nothing a member can misread."""
BOOKING_PREFIX = "BK-"
BOOKING_LENGTH = 10


def new_booking_id() -> str:
    # One uniform draw over every possible id, written in base 30: no modulo bias, one syscall.
    n = secrets.randbelow(len(BOOKING_ALPHABET) ** BOOKING_LENGTH)
    chars = []
    for _ in range(BOOKING_LENGTH):
        n, digit = divmod(n, len(BOOKING_ALPHABET))
        chars.append(BOOKING_ALPHABET[digit])
    return BOOKING_PREFIX + "".join(chars)


def looks_like_booking_id(value: str) -> bool:
    body = value.upper().removeprefix(BOOKING_PREFIX)
    return (
        value.upper().startswith(BOOKING_PREFIX)
        and len(body) == BOOKING_LENGTH
        and all(c in BOOKING_ALPHABET for c in body)
    )


class OrderEvent(StrEnum):
    CREATED = "created"
    VOUCHER_ISSUED = "voucher.issued"
    VOUCHER_ISSUE_FAILED = "voucher.issue_failed"
    DELIVERY_SUCCEEDED = "delivery.succeeded"
    DELIVERY_RETRYING = "delivery.failed.retrying"
    DELIVERY_FAILED_FINAL = "delivery.failed.final"
    CANCEL_REQUESTED = "cancel_requested"


@dataclass(frozen=True)
class Status:
    state: OrderState
    fulfilment: FulfilmentStatus | None

    def __post_init__(self) -> None:
        if (self.state is OrderState.PENDING) != (self.fulfilment is not None):
            raise ValueError("a pending order has a fulfilment status, a finished one has none")

    @property
    def terminal(self) -> bool:
        return self.state is not OrderState.PENDING


NEW_ORDER = Status(OrderState.PENDING, FulfilmentStatus.AWAITING_VOUCHER)


@dataclass(frozen=True)
class Decision:
    """What an event does: `after` is the status once applied (== before when not applied)."""

    before: Status
    after: Status
    applied: bool
    late: bool = False
    note: str | None = None

    @property
    def changed(self) -> bool:
        return self.applied and self.after != self.before


class OrderError(Exception):
    """Base of the order rules' refusals."""


class CompletedOrderCannotBeCancelled(OrderError):
    def __init__(self) -> None:
        super().__init__(
            "A completed order cannot be cancelled: its voucher was delivered. Recovering a delivered "
            "code is a voucher operation."
        )


class OrderNotFound(OrderError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No order is known as {ref!r}.")


def _pending(fulfilment: FulfilmentStatus) -> Status:
    return Status(OrderState.PENDING, fulfilment)


COMPLETED = Status(OrderState.COMPLETED, None)
CANCELLED = Status(OrderState.CANCELLED, None)


def decide(current: Status, event: OrderEvent) -> Decision:
    """The effect of `event` on an order in `current` status. Never raises: an event that does not
    apply is recorded as such (cancelling a completed order is refused by `cancel`, not here)."""
    if event is OrderEvent.CREATED:
        return Decision(current, current, applied=False, note="the order already exists")
    if current.terminal:
        return Decision(
            current, current, applied=False, late=True, note=f"arrived after the order was {current.state}"
        )
    fulfilment = current.fulfilment
    target: Status | None
    match event:
        case OrderEvent.VOUCHER_ISSUED:
            waiting = fulfilment in (FulfilmentStatus.AWAITING_VOUCHER, FulfilmentStatus.ON_HOLD)
            target = _pending(FulfilmentStatus.DELIVERING) if waiting else None
        case OrderEvent.VOUCHER_ISSUE_FAILED:
            target = (
                _pending(FulfilmentStatus.ON_HOLD)
                if fulfilment is FulfilmentStatus.AWAITING_VOUCHER
                else None
            )
        case OrderEvent.DELIVERY_SUCCEEDED:
            target = COMPLETED
        case OrderEvent.DELIVERY_RETRYING:
            # A delivery attempt means a code exists, even if voucher.issued has not arrived yet; after
            # a final failure, a new attempt (resend with corrected details) puts it back in delivery.
            target = _pending(FulfilmentStatus.DELIVERING)
        case OrderEvent.DELIVERY_FAILED_FINAL:
            target = _pending(FulfilmentStatus.DELIVERY_FAILED)
        case OrderEvent.CANCEL_REQUESTED:
            target = CANCELLED
    if target is None:
        return Decision(current, current, applied=False, note=f"stale while {fulfilment}")
    return Decision(current, target, applied=True)


def cancel(current: Status) -> Decision:
    """A cancellation request: refused for a completed order, a no-op for a cancelled one."""
    if current.state is OrderState.COMPLETED:
        raise CompletedOrderCannotBeCancelled()
    if current.state is OrderState.CANCELLED:
        return Decision(current, current, applied=False, note="already cancelled")
    return decide(current, OrderEvent.CANCEL_REQUESTED)

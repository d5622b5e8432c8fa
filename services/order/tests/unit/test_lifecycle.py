"""The order state machine, as properties over any sequence of events, and its named transitions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.orders import FulfilmentStatus, OrderState
from services.order.domain import (
    BOOKING_ALPHABET,
    CANCELLED,
    COMPLETED,
    NEW_ORDER,
    CompletedOrderCannotBeCancelled,
    OrderEvent,
    Status,
    cancel,
    decide,
    looks_like_booking_id,
    new_booking_id,
)

events = st.sampled_from([e for e in OrderEvent if e is not OrderEvent.CREATED])
statuses = st.sampled_from([Status(OrderState.PENDING, f) for f in FulfilmentStatus] + [COMPLETED, CANCELLED])


def pending(fulfilment: FulfilmentStatus) -> Status:
    return Status(OrderState.PENDING, fulfilment)


@given(st.lists(events, max_size=30))
def test_any_sequence_of_events_leaves_a_valid_status(sequence: list[OrderEvent]) -> None:
    status = NEW_ORDER
    for event in sequence:
        decision = decide(status, event)
        assert decision.before == status
        status = decision.after
        assert (status.state is OrderState.PENDING) == (status.fulfilment is not None)


@given(statuses, st.lists(events, min_size=1, max_size=20))
def test_terminal_states_absorb_every_later_event(start: Status, sequence: list[OrderEvent]) -> None:
    status = start
    reached_terminal_at: Status | None = None
    for event in sequence:
        decision = decide(status, event)
        if reached_terminal_at is not None:
            assert not decision.applied
            assert decision.late
            assert decision.after == reached_terminal_at
        status = decision.after
        if status.terminal and reached_terminal_at is None:
            reached_terminal_at = status


@given(statuses, events)
def test_an_event_not_applied_leaves_the_status_as_it_was(start: Status, event: OrderEvent) -> None:
    decision = decide(start, event)
    if not decision.applied:
        assert decision.after == start
    assert decision.late == (start.terminal and not decision.applied)


@pytest.mark.parametrize(
    ("before", "event", "after"),
    [
        (NEW_ORDER, OrderEvent.VOUCHER_ISSUED, pending(FulfilmentStatus.DELIVERING)),
        (NEW_ORDER, OrderEvent.VOUCHER_ISSUE_FAILED, pending(FulfilmentStatus.ON_HOLD)),
        (pending(FulfilmentStatus.ON_HOLD), OrderEvent.VOUCHER_ISSUED, pending(FulfilmentStatus.DELIVERING)),
        (NEW_ORDER, OrderEvent.DELIVERY_SUCCEEDED, COMPLETED),  # success before voucher.issued
        (
            pending(FulfilmentStatus.DELIVERING),
            OrderEvent.DELIVERY_FAILED_FINAL,
            pending(FulfilmentStatus.DELIVERY_FAILED),
        ),
        (pending(FulfilmentStatus.DELIVERY_FAILED), OrderEvent.DELIVERY_SUCCEEDED, COMPLETED),
        (
            pending(FulfilmentStatus.DELIVERY_FAILED),
            OrderEvent.DELIVERY_RETRYING,
            pending(FulfilmentStatus.DELIVERING),
        ),
        (pending(FulfilmentStatus.ON_HOLD), OrderEvent.CANCEL_REQUESTED, CANCELLED),
    ],
)
def test_named_transitions(before: Status, event: OrderEvent, after: Status) -> None:
    decision = decide(before, event)

    assert decision.applied
    assert decision.after == after


def test_a_stale_issue_failure_after_the_code_was_issued_is_recorded_not_applied() -> None:
    decision = decide(pending(FulfilmentStatus.DELIVERING), OrderEvent.VOUCHER_ISSUE_FAILED)

    assert not decision.applied
    assert not decision.late
    assert decision.after == pending(FulfilmentStatus.DELIVERING)


def test_a_completed_order_cannot_be_cancelled_and_a_cancelled_one_stays_cancelled() -> None:
    with pytest.raises(CompletedOrderCannotBeCancelled):
        cancel(COMPLETED)
    assert not cancel(CANCELLED).applied
    assert cancel(NEW_ORDER).after == CANCELLED


def test_a_status_cannot_be_pending_without_fulfilment_or_finished_with_one() -> None:
    with pytest.raises(ValueError, match="fulfilment"):
        Status(OrderState.PENDING, None)
    with pytest.raises(ValueError, match="fulfilment"):
        Status(OrderState.COMPLETED, FulfilmentStatus.DELIVERING)


def test_booking_ids_use_the_unambiguous_alphabet() -> None:
    for _ in range(200):
        booking = new_booking_id()
        assert booking.startswith("BK-")
        assert len(booking) == 13
        assert set(booking[3:]) <= set(BOOKING_ALPHABET)
        assert looks_like_booking_id(booking.lower())
    assert not set("01OILU") & set(BOOKING_ALPHABET)


def test_other_strings_are_not_booking_ids() -> None:
    assert not looks_like_booking_id("BK-0000000000")
    assert not looks_like_booking_id("BK-ABC")
    assert not looks_like_booking_id("XX-2222222222")

"""The storefront saga as a state machine: whatever the wallet and the order service answer, in any
order, repeated or late, and however often steps time out, a member is charged at most once, refunded
at most once and only after a charge, and never both served and refunded."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from services.redemption.storefront import domain as d

RID = uuid.UUID("00000000-0000-0000-0000-00000000abcd")
ENTRIES = [uuid.UUID(int=i) for i in range(1, 4)]
ORDERS = [uuid.UUID(int=100 + i) for i in range(2)]

events = st.one_of(
    st.builds(d.DebitRecorded, st.sampled_from(ENTRIES)),
    st.builds(d.DebitRejected, st.just("insufficient_points")),
    st.builds(d.OrderOpened, st.sampled_from(ORDERS)),
    st.builds(d.OrderCompleted, st.sampled_from(ORDERS)),
    st.builds(d.OrderCancelled, st.sampled_from(ORDERS), st.just("cancelled")),
    st.builds(d.RefundRecorded, st.sampled_from(ENTRIES)),
    st.just("timeout"),
)


class Wallet:
    """A wallet as the contract describes it: one entry per idempotency key."""

    def __init__(self) -> None:
        self.applied: dict[str, str] = {}

    def take(self, command: d.Command) -> None:
        if isinstance(command, d.RequestDebit):
            self.applied.setdefault(command.key, "debit")
        elif isinstance(command, d.RequestRefund):
            self.applied.setdefault(command.key, "refund")

    def count(self, kind: str) -> int:
        return sum(1 for v in self.applied.values() if v == kind)


@settings(max_examples=500)
@given(st.lists(events, max_size=30))
def test_any_sequence_of_answers_charges_at_most_once_and_refunds_only_a_charge(steps: list[object]) -> None:
    decision = d.start(RID)
    saga = decision.saga
    wallet = Wallet()
    for command in decision.commands:
        wallet.take(command)
    refunds_asked = 0
    ever_completed = False
    for step in steps:
        before = saga
        if step == "timeout":
            decision = d.redrive(saga, max_order_attempts=3)
        else:
            assert not isinstance(step, str)
            decision = d.apply(saga, step)
        saga = decision.saga
        for command in decision.commands:
            wallet.take(command)
            if isinstance(command, d.RequestRefund):
                refunds_asked += 1
                assert saga.debit_entry_id is not None, "refund asked without a debit"
                assert command.key == d.refund_key(RID)
            if isinstance(command, d.RequestDebit):
                assert command.key == d.debit_key(RID)
        # Once known, the wallet entries of a saga never change.
        if before.debit_entry_id is not None:
            assert saga.debit_entry_id == before.debit_entry_id
        if before.refund_entry_id is not None:
            assert saga.refund_entry_id == before.refund_entry_id
        # Completed and refunded are final.
        if before.state in (d.SagaState.COMPLETED, d.SagaState.REFUNDED):
            assert saga.state is before.state
        ever_completed |= saga.state is d.SagaState.COMPLETED
        assert saga.refund_entry_id is None or saga.debit_entry_id is not None
        if saga.state is d.SagaState.REFUNDED:
            assert saga.refund_entry_id is not None
    assert wallet.count("debit") <= 1
    assert wallet.count("refund") <= 1
    assert not (ever_completed and refunds_asked)


def test_the_happy_path_asks_for_the_debit_then_the_order_then_completes() -> None:
    start = d.start(RID)
    assert start.commands == (d.RequestDebit(d.debit_key(RID)),)
    debited = d.apply(start.saga, d.DebitRecorded(ENTRIES[0]))
    assert debited.saga.state is d.SagaState.ORDER_REQUESTED
    assert debited.commands == (d.RequestOrder(d.order_key(RID)),)
    opened = d.apply(debited.saga, d.OrderOpened(ORDERS[0], "BK-1"))
    done = d.apply(opened.saga, d.OrderCompleted(ORDERS[0], "BK-1"))
    assert done.saga.state is d.SagaState.COMPLETED
    assert done.commands == ()


def test_an_order_that_never_appears_is_given_up_and_refunded_and_a_late_one_is_cancelled() -> None:
    saga = d.apply(d.start(RID).saga, d.DebitRecorded(ENTRIES[0])).saga
    for _ in range(3):
        decision = d.redrive(saga, max_order_attempts=3)
        assert decision.commands == (d.RequestOrder(d.order_key(RID)),)
        saga = decision.saga
    gave_up = d.redrive(saga, max_order_attempts=3)
    assert gave_up.saga.state is d.SagaState.REFUND_REQUESTED
    assert gave_up.saga.reason == "order_not_created"
    assert gave_up.commands == (d.RequestRefund(d.refund_key(RID)),)

    late = d.apply(gave_up.saga, d.OrderOpened(ORDERS[1], "BK-2"))
    assert late.commands == (d.CancelOrder(ORDERS[1], "storefront redemption already refunded"),)
    assert d.apply(late.saga, d.OrderOpened(ORDERS[1], "BK-2")).commands == ()


def test_a_second_debit_entry_for_the_same_redemption_is_flagged_not_applied() -> None:
    saga = d.apply(d.start(RID).saga, d.DebitRecorded(ENTRIES[0])).saga
    second = d.apply(saga, d.DebitRecorded(ENTRIES[1]))
    assert second.saga == saga
    assert second.anomaly is not None


def test_keys_name_their_redemption_and_step_and_nobody_elses() -> None:
    assert d.redemption_of_key(d.debit_key(RID)) == (RID, "debit")
    assert d.redemption_of_key(d.refund_key(RID)) == (RID, "refund")
    assert d.redemption_of_key("ipa:123") is None
    assert d.redemption_of_key("redemption:not-a-uuid:debit") is None

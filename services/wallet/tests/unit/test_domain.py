"""The wallet's rules without I/O: points arithmetic, FIFO lots, reversals, expiry dates, exports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.wallet import Direction, EntryType
from services.wallet.domain import (
    AlreadyReversed,
    DeliveryStatus,
    EntryNotFound,
    ExpiryPolicy,
    InsufficientPoints,
    Lot,
    NotReversible,
    Posting,
    ReversalExceedsEntry,
    ReversedEntry,
    WalletFrozen,
    WalletStatus,
    add_months,
    balance_after,
    check_may_debit,
    check_reversal,
    delivery_status,
    expiring_between,
    fifo_order,
    take_points,
    upcoming_expiries,
)
from services.wallet.tests.support import posting as member_posting

T0 = datetime(2026, 1, 1, tzinfo=UTC)
points = st.integers(min_value=1, max_value=10**9)


def posting(entry_type: EntryType, amount: int, **kw) -> Posting:
    return member_posting("m1", entry_type, amount, **kw)


lots_strategy = st.lists(
    st.builds(
        Lot,
        entry_id=st.uuids(),
        earned_at=st.integers(0, 1000).map(lambda d: T0 + timedelta(days=d)),
        expires_at=st.one_of(st.none(), st.integers(0, 2000).map(lambda d: T0 + timedelta(days=d))),
        remaining=st.integers(0, 1000),
    ),
    max_size=12,
    unique_by=lambda lot: lot.entry_id,
)


@given(balance=st.integers(0, 10**9), amount=points)
def test_a_credit_adds_its_points_and_a_debit_never_takes_the_balance_below_zero(balance, amount):
    assert balance_after(balance, posting(EntryType.REFUND, amount)) == balance + amount
    debit = posting(EntryType.REDEMPTION, amount)
    if amount > balance:
        with pytest.raises(InsufficientPoints):
            balance_after(balance, debit)
    else:
        assert balance_after(balance, debit) == balance - amount >= 0


@given(lots=lots_strategy, amount=points)
def test_points_are_taken_oldest_first_and_only_what_the_lots_hold(lots, amount):
    total = sum(lot.remaining for lot in lots)
    if amount > total:
        with pytest.raises(InsufficientPoints):
            take_points(lots, amount)
        return
    taken = take_points(lots, amount)
    assert sum(taken.values()) == amount
    by_id = {lot.entry_id: lot for lot in lots}
    assert all(0 < share <= by_id[entry_id].remaining for entry_id, share in taken.items())
    # FIFO: every lot before the last one touched is emptied.
    ordered = [lot for lot in fifo_order(lots) if lot.remaining > 0]
    touched = [i for i, lot in enumerate(ordered) if lot.entry_id in taken]
    for lot in ordered[: touched[-1]]:
        assert taken.get(lot.entry_id) == lot.remaining


@given(lots=lots_strategy.filter(lambda ls: any(lot.remaining for lot in ls)), data=st.data())
def test_a_reversal_takes_from_its_own_credit_first(lots, data):
    own = data.draw(st.sampled_from([lot for lot in lots if lot.remaining]))
    amount = data.draw(st.integers(1, sum(lot.remaining for lot in lots)))
    taken = take_points(lots, amount, first=own.entry_id)
    assert taken[own.entry_id] == min(own.remaining, amount)


@given(
    operations=st.lists(
        st.tuples(st.sampled_from([EntryType.PROGRAMME_RULE, EntryType.REDEMPTION]), st.integers(1, 500)),
        max_size=40,
    )
)
def test_any_sequence_of_postings_keeps_balance_equal_to_lots_and_to_the_ledger_sum(operations):
    balance, lots, ledger = 0, [], []
    for day, (entry_type, amount) in enumerate(operations):
        p = posting(entry_type, amount)
        try:
            new_balance = balance_after(balance, p)
        except InsufficientPoints:
            continue
        if p.direction is Direction.CREDIT:
            lots.append(Lot(uuid.uuid4(), T0 + timedelta(days=day), None, amount))
        else:
            taken = take_points(lots, amount)
            lots = [
                Lot(lot.entry_id, lot.earned_at, None, lot.remaining - taken.get(lot.entry_id, 0))
                for lot in lots
            ]
        balance = new_balance
        ledger.append(amount if p.direction is Direction.CREDIT else -amount)
        assert balance >= 0
    assert balance == sum(ledger) == sum(lot.remaining for lot in lots)


def test_a_frozen_wallet_takes_no_requested_debits():
    check_may_debit(WalletStatus.ACTIVE, posting(EntryType.REDEMPTION, 1))
    with pytest.raises(WalletFrozen):
        check_may_debit(WalletStatus.FROZEN, posting(EntryType.REDEMPTION, 1))


@given(original=points, amount=points)
def test_a_reversal_never_exceeds_the_credit_it_reverses(original, amount):
    entry_id = uuid.uuid4()
    target = ReversedEntry(entry_id, "m1", Direction.CREDIT, original, already_reversed=False)
    reversal = posting(EntryType.REVERSAL, amount, reverses_entry_id=entry_id)
    if amount > original:
        with pytest.raises(ReversalExceedsEntry):
            check_reversal(target, reversal)
    else:
        check_reversal(target, reversal)


def test_a_reversal_needs_an_unreversed_credit_of_the_same_member():
    entry_id = uuid.uuid4()
    reversal = posting(EntryType.REVERSAL, 5, reverses_entry_id=entry_id)
    with pytest.raises(EntryNotFound):
        check_reversal(None, reversal)
    with pytest.raises(NotReversible):
        check_reversal(ReversedEntry(entry_id, "m2", Direction.CREDIT, 10, False), reversal)
    with pytest.raises(NotReversible):
        check_reversal(ReversedEntry(entry_id, "m1", Direction.DEBIT, 10, False), reversal)
    with pytest.raises(AlreadyReversed):
        check_reversal(ReversedEntry(entry_id, "m1", Direction.CREDIT, 10, True), reversal)


def test_only_a_reversal_names_an_entry_and_every_posting_moves_points():
    with pytest.raises(ValueError, match="reversal"):
        posting(EntryType.REVERSAL, 5)
    with pytest.raises(ValueError, match="reversal"):
        posting(EntryType.REFUND, 5, reverses_entry_id=uuid.uuid4())
    with pytest.raises(ValueError, match="positive"):
        posting(EntryType.REFUND, 0)


@given(
    moment=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    months=st.integers(0, 240),
)
def test_adding_months_lands_in_the_right_month_on_the_same_or_the_last_day(moment, months):
    later = add_months(moment, months)
    assert (later.year * 12 + later.month) - (moment.year * 12 + moment.month) == months
    assert later.day == moment.day or (later.day < moment.day and (later + timedelta(days=1)).day == 1)
    assert later.time() == moment.time()
    assert later >= moment


def test_month_ends_are_clamped():
    assert add_months(datetime(2027, 1, 31, tzinfo=UTC), 1) == datetime(2027, 2, 28, tzinfo=UTC)
    assert add_months(datetime(2028, 1, 31, tzinfo=UTC), 1) == datetime(2028, 2, 29, tzinfo=UTC)
    assert ExpiryPolicy(0).expires_at(T0) is None
    assert ExpiryPolicy(12).expires_at(T0) == datetime(2027, 1, 1, tzinfo=UTC)


def test_members_see_what_expires_when_summed_per_instant():
    soon, later = T0 + timedelta(days=10), T0 + timedelta(days=90)
    lots = [
        Lot(uuid.uuid4(), T0, soon, 30),
        Lot(uuid.uuid4(), T0, soon, 20),
        Lot(uuid.uuid4(), T0, later, 5),
        Lot(uuid.uuid4(), T0, None, 100),
        Lot(uuid.uuid4(), T0, soon, 0),
    ]
    assert [(e.expires_at, e.points) for e in expiring_between(lots, T0, T0 + timedelta(days=30))] == [
        (soon, 50)
    ]
    assert [(e.expires_at, e.points) for e in upcoming_expiries(lots, T0)] == [(soon, 50), (later, 5)]


@pytest.mark.parametrize(
    ("facts", "status"),
    [
        ({"state": "pending", "fulfilment_status": "awaiting_voucher"}, DeliveryStatus.PENDING),
        ({"state": "pending", "fulfilment_status": "on_hold"}, DeliveryStatus.PENDING),
        ({"state": "pending", "fulfilment_status": "delivering"}, DeliveryStatus.PROCESSING),
        ({"state": None, "code_issued": True}, DeliveryStatus.PROCESSING),
        (
            {"state": "pending", "delivery_outcome": "failed", "delivery_final": False},
            DeliveryStatus.PROCESSING,
        ),
        ({"state": "pending", "delivery_outcome": "failed", "delivery_final": True}, DeliveryStatus.FAILED),
        ({"state": "pending", "fulfilment_status": "delivery_failed"}, DeliveryStatus.FAILED),
        ({"state": None, "delivery_outcome": "succeeded"}, DeliveryStatus.DELIVERED),
        ({"state": "completed"}, DeliveryStatus.DELIVERED),
        ({"state": "cancelled", "code_issued": True}, DeliveryStatus.CANCELLED),
    ],
)
def test_the_dashboard_status_combines_order_voucher_and_delivery_facts(facts, status):
    arguments = {
        "state": None,
        "fulfilment_status": None,
        "delivery_outcome": None,
        "delivery_final": None,
        "code_issued": False,
    }
    assert delivery_status(**(arguments | facts)) is status

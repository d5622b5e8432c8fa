"""The dashboard's read model fed a batch at a time ends exactly as fed one event at a time: the same
order rows, the same member audit chains (hash for hash) and the same facts still waiting for a member."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from chassis.testing import (
    FakeClock,
    delivery_outcome,
    envelope_at,
    order_state_changed,
    table_snapshot,
    voucher_issued,
    voucher_status_changed,
)
from contracts.envelope import Envelope
from contracts.orders import FulfilmentStatus, OrderState
from contracts.topics import Topics
from contracts.vouchers import CodeStatus
from deploy.testing import twin_service_pools
from services.wallet import readmodel_batch
from services.wallet.domain import ExpiryPolicy
from services.wallet.handlers import WalletHandlers
from services.wallet.ledger import Ledger
from services.wallet.service import MIGRATIONS
from services.wallet.tests.support import START

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def twin_pools(service_db, pg_admin_dsn):
    """Two wallets' databases: one fed event by event, the other batch by batch."""
    async with twin_service_pools(service_db, pg_admin_dsn, MIGRATIONS) as pools:
        yield pools


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def state(
    order_id: uuid.UUID, member: str, new: OrderState, previous: OrderState | None, when: float, **kw: Any
) -> Envelope[Any]:
    data = order_state_changed(order_id, new, previous, member_id=member, campaign_id="spring-thanks", **kw)
    return envelope_at(data, at(when), producer="order")


def issued(order_id: uuid.UUID, when: float, code_id: uuid.UUID | None = None) -> Envelope[Any]:
    data = voucher_issued(
        order_id,
        code_id or uuid.uuid4(),
        campaign_id="spring-thanks",
        face_value="25.00",
        expires_at=at(86400 * 365),
    )
    return envelope_at(data, at(when), producer="voucher")


def code_status(
    order_id: uuid.UUID | None,
    code_id: uuid.UUID,
    new: CodeStatus,
    when: float,
    *,
    remaining: str = "25.00",
    expires_in_days: int = 365,
    test: bool = False,
) -> Envelope[Any]:
    data = voucher_status_changed(
        order_id,
        code_id,
        new,
        campaign_id="spring-thanks",
        expires_at=at(86400 * expires_in_days),
        remaining_value=remaining,
        test=test,
    )
    return envelope_at(data, at(when), producer="voucher")


def delivered(order_id: uuid.UUID, when: float, *, ok: bool, attempt: int = 1) -> Envelope[Any]:
    return envelope_at(delivery_outcome(order_id, attempt, ok=ok), at(when), producer="delivery")


def scenario() -> list[list[Envelope[Any]]]:
    """Batches as the consumers would see them: one topic each, arriving in any order across topics."""
    alice, bob = f"m-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"
    o1, o2, o3, o4 = (uuid.uuid4() for _ in range(4))
    s, f = OrderState, FulfilmentStatus
    return [
        # The voucher and a failed delivery of o1 come before anything names its member: they wait.
        [issued(o1, 3), issued(o3, 3.5)],
        [delivered(o1, 5, ok=False)],
        # One batch holds o1's whole life (and a repeat of a state), o2's start and bob's o3.
        [
            state(
                o1,
                alice,
                s.PENDING,
                None,
                1,
                fulfilment_status=f.AWAITING_VOUCHER,
                amount="25.00",
                currency="EUR",
            ),
            state(o2, alice, s.PENDING, None, 1.5, fulfilment_status=f.AWAITING_VOUCHER),
            state(o1, alice, s.PENDING, s.PENDING, 2, fulfilment_status=f.DELIVERING),
            state(o3, bob, s.PENDING, None, 2.5, fulfilment_status=f.ON_HOLD, external_ref="hris-7"),
            state(o1, alice, s.PENDING, s.PENDING, 2.2, fulfilment_status=f.DELIVERY_FAILED),
            state(o1, alice, s.COMPLETED, s.PENDING, 7),
            # A late event does not bring a completed order back.
            state(o1, alice, s.PENDING, s.PENDING, 4.5, fulfilment_status=f.DELIVERING),
        ],
        [issued(o2, 6), issued(o4, 6.5)],
        # A success, then an older failure of the same order in the same batch: the success stays.
        [delivered(o1, 6.8, ok=True, attempt=2), delivered(o2, 8, ok=True)],
        [delivered(o1, 6.0, ok=False, attempt=1), delivered(o3, 9, ok=False), delivered(o2, 7.5, ok=False)],
        [state(o2, alice, s.CANCELLED, s.PENDING, 9, reason="member asked")],
        [state(o3, bob, s.PENDING, s.PENDING, 9.5, fulfilment_status=f.ON_HOLD)],
    ]


DASHBOARD_TABLES = {
    "orders": "SELECT * FROM reward_orders ORDER BY order_id",
    "codes": "SELECT * FROM reward_codes ORDER BY order_id, code_id",
    "audit": "SELECT member_id, seq, occurred_at, actor, action, details::text, prev_hash, hash"
    " FROM member_audit ORDER BY member_id, seq",
    "heads": "SELECT * FROM member_audit_heads ORDER BY member_id",
    "pending": "SELECT order_id, occurred_at, actor, action, details::text FROM pending_member_audit"
    " ORDER BY id",
}


def per_event(handlers: WalletHandlers, topic: str) -> Callable[[Any, Envelope[Any]], Awaitable[None]]:
    return {
        Topics.ORDER_STATE_CHANGED: handlers.order_state_changed,
        Topics.VOUCHER_ISSUED: handlers.voucher_issued,
        Topics.VOUCHER_STATUS_CHANGED: handlers.voucher_status_changed,
        Topics.DELIVERY_SUCCEEDED: handlers.delivery_succeeded,
        Topics.DELIVERY_FAILED: handlers.delivery_failed,
    }[topic]


def per_batch(topic: str) -> Callable[[Any, Sequence[Envelope[Any]]], Awaitable[None]]:
    return {
        Topics.ORDER_STATE_CHANGED: readmodel_batch.apply_order_states,
        Topics.VOUCHER_ISSUED: readmodel_batch.apply_vouchers_issued,
        Topics.VOUCHER_STATUS_CHANGED: readmodel_batch.apply_code_statuses,
        Topics.DELIVERY_SUCCEEDED: readmodel_batch.apply_deliveries,
        Topics.DELIVERY_FAILED: readmodel_batch.apply_deliveries,
    }[topic]


async def test_a_batch_of_order_voucher_and_delivery_events_ends_as_the_events_one_by_one(twin_pools):
    one_by_one, batched = twin_pools
    handlers = WalletHandlers(Ledger(ExpiryPolicy(months=12), FakeClock(START).now))
    batches = scenario()
    for batch in batches:
        for env in batch:
            async with one_by_one.acquire() as conn, conn.transaction():
                await per_event(handlers, env.event_type)(conn, env)
        topics = {env.event_type for env in batch}
        async with batched.acquire() as conn, conn.transaction():
            for topic in topics:  # successes and failures are two topics: two batches
                await per_batch(topic)(conn, [e for e in batch if e.event_type == topic])

    expected, got = (
        await table_snapshot(one_by_one, DASHBOARD_TABLES),
        await table_snapshot(batched, DASHBOARD_TABLES),
    )
    assert got == expected
    assert len(expected["audit"]) >= 10
    assert len(expected["pending"]) == 1  # o4 never named its member
    completed = [r for r in expected["orders"] if r[7] == "completed"]
    assert len(completed) == 1


def code_scenario() -> list[list[Envelope[Any]]]:
    """Codes' statuses racing their issue, a recovery's replacement, test codes and pool returns."""
    member = f"m-{uuid.uuid4().hex[:8]}"
    o1, o2 = uuid.uuid4(), uuid.uuid4()
    c1, c2, c3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    s = CodeStatus
    return [
        # c1's first status comes before its issue; its later statuses and an older one share a batch.
        [code_status(o1, c1, s.ISSUED, 2)],
        [issued(o1, 1, c1), issued(o2, 1.5, c3)],
        [
            code_status(o1, c1, s.PARTIALLY_REDEEMED, 3, remaining="10.00"),
            code_status(o1, c1, s.EXPIRED, 5, remaining="10.00", expires_in_days=0),
            code_status(o1, c1, s.ISSUED, 2.5),  # late: the newer status stays
            code_status(o1, c1, s.PARTIALLY_REDEEMED, 6, remaining="10.00", expires_in_days=400),
            code_status(o2, c3, s.REDEEMED, 4, remaining="0", test=True),
            code_status(None, c3, s.AVAILABLE, 4.5),
        ],
        # o2's code is recovered and replaced.
        [code_status(o2, c3, s.RECOVERED, 7), code_status(o2, c2, s.ISSUED, 7.5)],
        [issued(o2, 7.5, c2)],
        [
            state(o1, member, OrderState.PENDING, None, 0.5, fulfilment_status=FulfilmentStatus.DELIVERING),
            state(o2, member, OrderState.PENDING, None, 0.6, fulfilment_status=FulfilmentStatus.DELIVERING),
        ],
    ]


async def test_a_batch_of_code_statuses_ends_as_the_statuses_one_by_one(twin_pools):
    one_by_one, batched = twin_pools
    handlers = WalletHandlers(Ledger(ExpiryPolicy(months=12), FakeClock(START).now))
    for batch in code_scenario():
        for env in batch:
            async with one_by_one.acquire() as conn, conn.transaction():
                await per_event(handlers, env.event_type)(conn, env)
        async with batched.acquire() as conn, conn.transaction():
            await per_batch(batch[0].event_type)(conn, batch)

    expected, got = (
        await table_snapshot(one_by_one, DASHBOARD_TABLES),
        await table_snapshot(batched, DASHBOARD_TABLES),
    )
    assert got == expected
    statuses = sorted((r[4], r[5]) for r in expected["codes"])
    assert statuses == [
        ("issued", Decimal("25.00")),
        ("partially_redeemed", Decimal("10.00")),
        ("recovered", Decimal("25.00")),
    ]


async def test_the_batched_chain_verifies(twin_pools):
    from services.wallet.member_audit import verify_member_audit

    _, batched = twin_pools
    for batch in scenario():
        topics = {env.event_type for env in batch}
        async with batched.acquire() as conn, conn.transaction():
            for topic in topics:
                await per_batch(topic)(conn, [e for e in batch if e.event_type == topic])
    async with batched.acquire() as conn:
        members = [r["member_id"] for r in await conn.fetch("SELECT member_id FROM member_audit_heads")]
        assert len(members) == 2
        for member in members:
            assert (await verify_member_audit(conn, member)).ok

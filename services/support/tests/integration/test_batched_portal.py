"""The portal's read model fed a batch at a time ends exactly as fed one event at a time: the same order
rows, codes, timelines and delivery attempts, and one missing-delivery ticket per order failed for good."""

from __future__ import annotations

import uuid
from datetime import timedelta
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
from services.support import handlers
from services.support.__main__ import MIGRATIONS
from services.support.context import SupportContext
from services.support.settings import SupportSettings
from services.support.tests.integration.conftest import START

PORTAL_TOPICS = (
    Topics.ORDER_STATE_CHANGED,
    Topics.VOUCHER_ISSUED,
    Topics.VOUCHER_STATUS_CHANGED,
    Topics.DELIVERY_SUCCEEDED,
    Topics.DELIVERY_FAILED,
)


@pytest.fixture
async def twin_pools(service_db, pg_admin_dsn):
    """Two support databases: one fed event by event, the other batch by batch."""
    async with twin_service_pools(service_db, pg_admin_dsn, MIGRATIONS) as pools:
        yield pools


def state(
    oid: uuid.UUID, new: OrderState, previous: OrderState | None, at: float, **kw: Any
) -> Envelope[Any]:
    return _at(order_state_changed(oid, new, previous, **kw), at)


def issued(oid: uuid.UUID, at: float) -> Envelope[Any]:
    return _at(voucher_issued(oid), at)


def code_status(
    oid: uuid.UUID | None, code_of: uuid.UUID, new: CodeStatus, at: float, remaining: str = "10.00", **kw: Any
) -> Envelope[Any]:
    """A status of the code `code_of`'s order was issued (its order id may be left out)."""
    code_id = uuid.uuid5(uuid.NAMESPACE_OID, str(code_of))
    expires_at = START + timedelta(days=30 + at)
    return _at(
        voucher_status_changed(oid, code_id, new, remaining_value=remaining, expires_at=expires_at, **kw), at
    )


def attempt(oid: uuid.UUID, n: int, at: float, *, ok: bool = False, final: bool = False) -> Envelope[Any]:
    return _at(delivery_outcome(oid, n, ok=ok, final=final), at)


def _at(data: Any, seconds: float) -> Envelope[Any]:
    return envelope_at(data, START + timedelta(seconds=seconds))


def scenario() -> list[list[Envelope[Any]]]:
    """Batches of one topic each, as the consumers see them; orders' events arrive in any order."""
    o1, o2, o3, o4 = (uuid.uuid4() for _ in range(4))
    s, f = OrderState, FulfilmentStatus
    return [
        # A final failure of o4 before the order is known: a ticket without a member, filled in later.
        [attempt(o4, 1, 1, final=True), attempt(o1, 1, 2), attempt(o4, 2, 3, final=True), attempt(o1, 2, 4)],
        [
            state(o1, s.PENDING, None, 1, fulfilment_status=f.AWAITING_VOUCHER),
            state(o2, s.PENDING, None, 1, fulfilment_status=f.AWAITING_VOUCHER),
            state(o1, s.PENDING, s.PENDING, 3, fulfilment_status=f.DELIVERING),
            state(o1, s.COMPLETED, s.PENDING, 6),
            state(o1, s.PENDING, s.PENDING, 2, fulfilment_status=f.DELIVERING),  # late: timeline only
            state(o4, s.PENDING, None, 0.5, fulfilment_status=f.DELIVERY_FAILED),
            state(o3, s.PENDING, None, 0.7, fulfilment_status=f.ON_HOLD),
        ],
        # o1's code is partly redeemed before its issue is seen; statuses of one batch keep the newest.
        [code_status(o1, o1, CodeStatus.PARTIALLY_REDEEMED, 2.7, "4.00")],
        [issued(o1, 2.5), issued(o2, 2.6), issued(o3, 9)],
        [
            code_status(o1, o1, CodeStatus.REDEEMED, 8, "0"),
            code_status(o1, o1, CodeStatus.ISSUED, 2.55),  # late: timeline only
            code_status(o2, o2, CodeStatus.EXPIRED, 8.5),
            code_status(o3, o3, CodeStatus.REDEEMED, 9.5, "0", test=True),
            code_status(None, o2, CodeStatus.AVAILABLE, 9.6),
        ],
        [attempt(o1, 3, 5, ok=True), attempt(o2, 1, 7, ok=True)],
        [attempt(o3, 1, 10), attempt(o3, 2, 11, final=True), attempt(o2, 2, 12)],
    ]


PORTAL_TABLES = {
    "orders": "SELECT * FROM portal_orders ORDER BY order_id",
    "codes": "SELECT * FROM portal_codes ORDER BY order_id, code_id",
    "timeline": "SELECT event_id, order_id, occurred_at, kind, details::text FROM portal_timeline"
    " ORDER BY event_id",
    "attempts": "SELECT * FROM delivery_attempts ORDER BY event_id",
    # Ticket ids are drawn afresh: compare what each order's ticket says and what happened to it.
    "tickets": "SELECT t.order_id, t.member_id, t.booking_id, t.category, t.state, t.priority,"
    "       array_agg(e.kind ORDER BY e.event_seq) AS kinds"
    "  FROM tickets t JOIN ticket_events e USING (ticket_id)"
    " GROUP BY t.ticket_id ORDER BY t.order_id",
}


async def test_a_batch_of_portal_events_ends_as_the_events_one_by_one(twin_pools, kafka_bootstrap):
    one_by_one, batched = twin_pools
    settings = SupportSettings(
        ORCHARD_SERVICE="support", DATABASE_URL="postgresql://unused", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap
    )
    subs = {
        s.topic: s
        for s in handlers.subscriptions(SupportContext(settings=settings, clock=FakeClock(START)))
        if s.topic in PORTAL_TOPICS
    }
    assert all(s.handle_batch is not None for s in subs.values())
    for batch in scenario():
        for env in batch:
            async with one_by_one.acquire() as conn, conn.transaction():
                await subs[env.event_type].handle(conn, env)
        async with batched.acquire() as conn, conn.transaction():
            handle_batch = subs[batch[0].event_type].handle_batch
            assert handle_batch is not None
            await handle_batch(conn, batch)

    expected, got = (
        await table_snapshot(one_by_one, PORTAL_TABLES),
        await table_snapshot(batched, PORTAL_TABLES),
    )
    assert got == expected
    assert len(expected["orders"]) == 4
    assert sorted(r[4] for r in expected["codes"] if r[4] is not None) == ["expired", "redeemed"]
    assert len(expected["attempts"]) == 9
    assert len(expected["tickets"]) == 2  # o4 (twice failed for good) and o3

"""The portal's read model from published order, voucher and delivery events; resend and goodwill."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from chassis.audit import verify_audit_chain
from chassis.sealed_codes import dev_sealer
from chassis.testing import produce, wait_until
from contracts.delivery import DeliveryFailed, DeliverySucceeded
from contracts.envelope import Envelope
from contracts.orders import FulfilmentStatus, OrderSource, OrderState, OrderStateChanged
from contracts.topics import Topics
from contracts.values import Channel
from contracts.vouchers import VoucherIssued
from contracts.wallet import EntryType, WalletReference, WalletTransactionRecorded
from services.support.tests.integration.conftest import Support

CLEAR_CODE = "ORCH-SECRET-9Q2M"


@pytest.fixture
def support_env() -> dict[str, object]:
    return {"ORCHARD_SUPPORT_GOODWILL_LIMITS": {"support_agent": {"per_adjustment": 100, "per_day": 150}}}


def _state(
    order_id: uuid.UUID, booking_id: str, state: OrderState, fulfilment: FulfilmentStatus | None, **kw
):
    return OrderStateChanged(
        order_id=order_id,
        booking_id=booking_id,
        member_id="member-portal-1",
        campaign_id="camp-portal",
        source=OrderSource.IPA,
        state=state,
        fulfilment_status=fulfilment,
        **kw,
    )


async def _order(support: Support, *, completed: bool = True) -> tuple[uuid.UUID, str]:
    order_id, delivery_id = uuid.uuid4(), uuid.uuid4()
    booking_id = f"BK-{uuid.uuid4().hex[:10].upper()}"
    key = str(order_id)
    await support.publish(
        Topics.ORDER_STATE_CHANGED,
        key,
        _state(order_id, booking_id, OrderState.PENDING, FulfilmentStatus.AWAITING_VOUCHER),
    )
    await support.publish(
        Topics.VOUCHER_ISSUED,
        key,
        VoucherIssued(
            order_id=order_id,
            campaign_id="camp-portal",
            code_id=(code_id := uuid.uuid4()),
            sealed_code=dev_sealer().seal(CLEAR_CODE, code_id),
            masked_code="****-****-9Q2M",
            face_value=Decimal("25.00"),
            currency="EUR",
            expires_at=datetime(2027, 12, 31, tzinfo=UTC),
        ),
    )
    await support.publish(
        Topics.DELIVERY_FAILED,
        key,
        DeliveryFailed(
            order_id=order_id,
            delivery_id=delivery_id,
            channel=Channel.EMAIL,
            attempt=1,
            reason_code="smtp_timeout",
            retryable=True,
            final=False,
        ),
    )
    await support.publish(
        Topics.DELIVERY_SUCCEEDED,
        key,
        DeliverySucceeded(order_id=order_id, delivery_id=delivery_id, channel=Channel.EMAIL, attempt=2),
    )
    if completed:
        await support.publish(
            Topics.ORDER_STATE_CHANGED,
            key,
            _state(order_id, booking_id, OrderState.COMPLETED, None, previous_state=OrderState.PENDING),
        )
    expected = 5 if completed else 4

    async def projected() -> bool:
        rows = await support.fetch("SELECT count(*) AS n FROM portal_timeline WHERE order_id = $1", order_id)
        return rows[0]["n"] >= expected

    await wait_until(projected, timeout=60, what="the order's events in the portal")
    return order_id, booking_id


async def test_an_agent_finds_an_order_by_booking_id_with_masked_code_and_every_attempt(support: Support):
    order_id, booking_id = await _order(support)
    agent = support.token("support_agent", "alice")

    by_booking = await support.client.get(f"/v1/portal/orders/{booking_id}", headers=agent)
    by_id = await support.client.get(f"/v1/portal/orders/{order_id}", headers=agent)

    assert by_booking.status_code == 200, by_booking.text
    assert by_booking.json() == by_id.json()
    view = by_booking.json()
    assert view["state"] == "completed"
    assert view["fulfilment_status"] is None
    assert view["member_id"] == "member-portal-1"
    assert view["voucher"]["masked_code"] == "****-****-9Q2M"
    assert view["voucher"]["face_value"] == "25.00"
    assert [(a["attempt"], a["outcome"], a["reason_code"]) for a in view["delivery_attempts"]] == [
        (1, "failed", "smtp_timeout"),
        (2, "succeeded", None),
    ]
    assert [e["kind"] for e in view["timeline"]] == [
        "order_state_changed",
        "voucher_issued",
        "delivery_failed",
        "delivery_succeeded",
        "order_state_changed",
    ]
    assert CLEAR_CODE not in by_booking.text
    stored = await support.fetch(
        "SELECT count(*) AS n FROM (SELECT o::text AS t FROM portal_orders o UNION ALL"
        " SELECT p::text FROM portal_timeline p) rows WHERE t LIKE '%' || $1 || '%'",
        CLEAR_CODE,
    )
    assert stored[0]["n"] == 0


async def test_the_portal_is_for_staff_and_unknown_orders_are_a_clear_404(support: Support):
    member = await support.client.get("/v1/portal/orders/BK-ANY", headers=support.token("member", "m1"))
    assert member.status_code == 403
    unknown = await support.client.get(
        "/v1/portal/orders/BK-NOPE", headers=support.token("support_agent", "a")
    )
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "order_not_found"


async def test_a_resend_needs_a_ticket_or_reason_and_is_audited_and_published(support: Support):
    order_id, booking_id = await _order(support)
    agent = support.token("support_agent", "alice")

    refused = await support.client.post(f"/v1/portal/orders/{booking_id}/resend", json={}, headers=agent)
    assert refused.status_code == 422
    assert {e["field"] for e in refused.json()["errors"]} == {"body.ticket_id", "body.reason"}

    ticket = await support.client.post(
        "/v1/tickets",
        json={"category": "missing_delivery", "description": "not in inbox", "booking_id": booking_id},
        headers=agent,
    )
    ticket_id = ticket.json()["ticket_id"]
    assert ticket.json()["member_id"] == "member-portal-1"
    resend = await support.client.post(
        f"/v1/portal/orders/{booking_id}/resend", json={"ticket_id": ticket_id}, headers=agent
    )
    assert resend.status_code == 202, resend.text

    async def published() -> bool:
        return bool(await support.events(Topics.SUPPORT_RESEND_REQUESTED, order_id=str(order_id)))

    await wait_until(published, timeout=60, what="support.resend_requested")
    event = (await support.events(Topics.SUPPORT_RESEND_REQUESTED, order_id=str(order_id)))[0]["data"]
    assert event["member_id"] == "member-portal-1"
    assert event["ticket_id"] == ticket_id
    assert event["requested_by"] == "support_agent:alice"
    audit = await support.fetch(
        "SELECT actor, action, details::text FROM audit_log WHERE action LIKE 'portal.%'"
    )
    assert [(r["actor"], r["action"]) for r in audit] == [("support_agent:alice", "portal.resend_requested")]
    timeline = await support.client.get(f"/v1/tickets/{ticket_id}", headers=agent)
    assert "resend_requested" in [e["kind"] for e in timeline.json()["timeline"]]


async def test_a_cancelled_order_is_not_resent(support: Support):
    order_id, booking_id = await _order(support, completed=False)
    await support.publish(
        Topics.ORDER_STATE_CHANGED,
        str(order_id),
        _state(order_id, booking_id, OrderState.CANCELLED, None, previous_state=OrderState.PENDING),
    )

    async def cancelled() -> bool:
        rows = await support.fetch("SELECT state FROM portal_orders WHERE order_id = $1", order_id)
        return rows[0]["state"] == "cancelled"

    await wait_until(cancelled, timeout=60, what="the cancellation in the portal")
    response = await support.client.post(
        f"/v1/portal/orders/{booking_id}/resend",
        json={"reason": "member asked"},
        headers=support.token("ops", "o"),
    )
    assert response.status_code == 409
    assert response.json()["code"] == "order_not_actionable"


async def test_goodwill_stays_within_the_roles_limits_and_reaches_the_wallet(support: Support):
    order_id, booking_id = await _order(support)
    alice = support.token("support_agent", "alice")
    url = f"/v1/portal/orders/{booking_id}/goodwill"

    too_big = await support.client.post(url, json={"points": 120, "reason": "sorry"}, headers=alice)
    assert too_big.status_code == 422
    assert too_big.json()["code"] == "goodwill_limit_exceeded"
    assert too_big.json()["errors"][0]["field"] == "body.points"
    unjustified = await support.client.post(url, json={"points": 10}, headers=alice)
    assert unjustified.status_code == 422
    auditor = await support.client.post(
        url, json={"points": 10, "reason": "x"}, headers=support.token("auditor", "z")
    )
    assert auditor.status_code == 403

    first = await support.client.post(
        url, json={"points": 100, "reason": "late voucher", "idempotency_key": "k1"}, headers=alice
    )
    assert first.status_code == 202, first.text
    again = await support.client.post(
        url, json={"points": 100, "reason": "late voucher", "idempotency_key": "k1"}, headers=alice
    )
    assert again.status_code == 200
    assert again.json()["action_id"] == first.json()["action_id"]
    over_the_day = await support.client.post(url, json={"points": 60, "reason": "more"}, headers=alice)
    assert over_the_day.status_code == 422
    assert "left today" in over_the_day.json()["detail"]
    second = await support.client.post(url, json={"points": 50, "reason": "more"}, headers=alice)
    assert second.status_code == 202
    bob = await support.client.post(
        url, json={"points": 100, "reason": "other agent"}, headers=support.token("support_agent", "bob")
    )
    assert bob.status_code == 202
    support.clock.advance(days=1)
    tomorrow = await support.client.post(url, json={"points": 100, "reason": "next day"}, headers=alice)
    assert tomorrow.status_code == 202

    async def credits() -> list[dict]:
        return await support.events(Topics.WALLET_CREDIT_REQUESTED, member_id="member-portal-1")

    await wait_until(lambda: _at_least(credits, 4), timeout=60, what="four wallet credits")
    mine = [e["data"] for e in await credits() if e["data"]["reference"]["order_id"] == str(order_id)]
    assert sorted((c["requested_by"], c["amount"]) for c in mine) == [
        ("support_agent:alice", "100"),
        ("support_agent:alice", "100"),
        ("support_agent:alice", "50"),
        ("support_agent:bob", "100"),
    ]
    assert {c["entry_type"] for c in mine} == {"manual_adjustment"}
    assert {c["reference"]["booking_id"] for c in mine} == {booking_id}

    # The wallet answers; the portal shows the adjustment as applied.
    credit = mine[0]
    await support.publish(
        Topics.WALLET_TRANSACTION_RECORDED,
        "member-portal-1",
        WalletTransactionRecorded(
            entry_id=uuid.uuid4(),
            member_id="member-portal-1",
            entry_type=EntryType.MANUAL_ADJUSTMENT,
            direction="credit",
            amount=int(credit["amount"]),
            balance_after=500,
            idempotency_key=credit["idempotency_key"],
            reference=WalletReference(order_id=order_id),
        ),
        producer="wallet",
    )

    async def applied() -> bool:
        rows = await support.fetch("SELECT count(*) AS n FROM agent_actions WHERE applied_at IS NOT NULL")
        return rows[0]["n"] == 1

    await wait_until(applied, timeout=60, what="the goodwill marked applied")
    audit = await support.fetch("SELECT actor FROM audit_log WHERE action = 'portal.goodwill_requested'")
    assert sorted(r["actor"] for r in audit) == ["support_agent:alice"] * 3 + ["support_agent:bob"]
    conn = await asyncpg.connect(support.db.dsn, server_settings={"search_path": support.db.schema})
    try:
        assert (await verify_audit_chain(conn)).ok
    finally:
        await conn.close()


async def _at_least(fetch, n: int) -> bool:
    return len(await fetch()) >= n


async def test_concurrent_adjustments_cannot_together_pass_the_daily_limit(support: Support):
    _, booking_id = await _order(support)
    alice = support.token("support_agent", "alice")
    url = f"/v1/portal/orders/{booking_id}/goodwill"

    responses = await asyncio.gather(
        *(
            support.client.post(url, json={"points": 100, "reason": f"call {i}"}, headers=alice)
            for i in range(4)
        )
    )

    assert sorted(r.status_code for r in responses) == [202, 422, 422, 422]
    granted = await support.fetch(
        "SELECT sum(points) AS total FROM agent_actions WHERE actor = 'support_agent:alice'"
    )
    assert granted[0]["total"] == 100


async def test_a_late_older_order_event_goes_on_the_timeline_without_turning_the_state_back(support: Support):
    order_id, booking_id = await _order(support)  # ends completed
    stale = Envelope.new(
        event_type=Topics.ORDER_STATE_CHANGED,
        producer="order",
        data=_state(order_id, booking_id, OrderState.PENDING, FulfilmentStatus.DELIVERING),
        occurred_at=datetime(2020, 1, 1, tzinfo=UTC),
    )
    await produce(support.bootstrap, Topics.ORDER_STATE_CHANGED, [(str(order_id).encode(), stale.to_bytes())])

    async def on_timeline() -> bool:
        rows = await support.fetch("SELECT 1 FROM portal_timeline WHERE event_id = $1", stale.event_id)
        return bool(rows)

    await wait_until(on_timeline, timeout=60, what="the stale event on the timeline")
    view = (
        await support.client.get(f"/v1/portal/orders/{booking_id}", headers=support.token("ops", "o"))
    ).json()
    assert view["state"] == "completed"
    assert view["timeline"][0]["occurred_at"] == "2020-01-01T00:00:00Z"

"""The order lifecycle driven by voucher and delivery events on the real broker, and cancellation."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from chassis.sealed_codes import dev_sealer
from chassis.testing import wait_until
from contracts.delivery import DeliveryFailed, DeliverySucceeded
from contracts.envelope import Envelope
from contracts.orders import OrderCancelRequested, OrderCreateRequested
from contracts.topics import Topics
from contracts.values import Channel
from contracts.vouchers import VoucherIssued, VoucherIssueFailed

from .conftest import OrderService, voucher_record


async def new_orders(service: OrderService, count: int = 1, **overrides: Any) -> list[dict[str, Any]]:
    campaign = await service.campaign()
    records = [voucher_record(campaign, **overrides) for _ in range(count)]
    await service.finished_batch(await service.upload_json(records))
    return [await service.order_of(r["external_ref"]) for r in records]


async def delivered_order(service: OrderService) -> dict[str, Any]:
    """A new order completed by its delivery's success, before any voucher.issued came."""
    [order] = await new_orders(service)
    await service.publish(Topics.DELIVERY_SUCCEEDED, order["order_id"], delivered(order))
    await service.wait_for_order(order["order_id"], state="completed")
    return order


def issued(order: dict[str, Any]) -> VoucherIssued:
    code_id = uuid.uuid4()
    return VoucherIssued(
        order_id=order["order_id"],
        campaign_id=order["campaign_id"],
        code_id=code_id,
        sealed_code=dev_sealer().seal("SECRET-CODE-1234", code_id),
        masked_code="****-1234",
        face_value=Decimal("25"),
        currency="EUR",
    )


def delivered(order: dict[str, Any], attempt: int = 1) -> DeliverySucceeded:
    return DeliverySucceeded(
        order_id=order["order_id"], delivery_id=uuid.uuid4(), channel=Channel.EMAIL, attempt=attempt
    )


def failed(order: dict[str, Any], *, final: bool, attempt: int = 1) -> DeliveryFailed:
    return DeliveryFailed(
        order_id=order["order_id"],
        delivery_id=uuid.uuid4(),
        channel=Channel.EMAIL,
        attempt=attempt,
        reason_code="bounced" if final else "provider_timeout",
        retryable=not final,
        final=final,
    )


async def test_an_order_follows_its_voucher_and_delivery_to_completed(order_service: OrderService) -> None:
    [order] = await new_orders(order_service)
    oid = order["order_id"]

    await order_service.publish(Topics.VOUCHER_ISSUED, oid, issued(order), producer="voucher")
    await order_service.wait_for_order(oid, fulfilment_status="delivering")
    await order_service.publish(Topics.DELIVERY_SUCCEEDED, oid, delivered(order), producer="delivery")
    done = await order_service.wait_for_order(oid, state="completed")

    assert done["fulfilment_status"] is None
    assert [(t["event"], t["state"], t["fulfilment_status"]) for t in done["timeline"]] == [
        ("created", "pending", "awaiting_voucher"),
        ("voucher.issued", "pending", "delivering"),
        ("delivery.succeeded", "completed", None),
    ]
    assert all(t["actor"] and t["at"] for t in done["timeline"])
    assert done["timeline"][2]["actor"] == "service:delivery"
    assert "SECRET-CODE" not in str(done)
    changes = await order_service.wait_published(Topics.ORDER_STATE_CHANGED, 3, order_id=oid)
    assert [(c["state"], c["previous_state"]) for c in changes] == [
        ("pending", None),
        ("pending", "pending"),
        ("completed", "pending"),
    ]
    assert changes[2]["envelope"].causation_id == str(done["timeline"][2]["cause_event_id"])


async def test_delivery_succeeded_before_voucher_issued_completes_and_the_late_voucher_is_only_recorded(
    order_service: OrderService,
) -> None:
    order = await delivered_order(order_service)
    oid = order["order_id"]

    await order_service.publish(Topics.VOUCHER_ISSUED, oid, issued(order))
    final = await order_service.wait_for_order(oid, late_events=1)

    assert final["state"] == "completed"
    late = final["timeline"][-1]
    assert (late["event"], late["applied"], late["late"], late["state"]) == (
        "voucher.issued",
        False,
        True,
        "completed",
    )


async def test_a_failed_issue_holds_the_order_with_its_reason(order_service: OrderService) -> None:
    [order] = await new_orders(order_service)
    oid = order["order_id"]

    await order_service.publish(
        Topics.VOUCHER_ISSUE_FAILED,
        oid,
        VoucherIssueFailed(order_id=oid, campaign_id=order["campaign_id"], reason="out_of_stock"),
    )
    held = await order_service.wait_for_order(oid, fulfilment_status="on_hold")
    await order_service.publish(Topics.VOUCHER_ISSUED, oid, issued(order))
    resumed = await order_service.wait_for_order(oid, fulfilment_status="delivering")

    assert held["status_reason"] == "out_of_stock"
    assert resumed["state"] == "pending"


async def test_a_final_delivery_failure_flags_the_order_and_a_later_success_still_completes_it(
    order_service: OrderService,
) -> None:
    [order] = await new_orders(order_service)
    oid = order["order_id"]
    await order_service.publish(Topics.VOUCHER_ISSUED, oid, issued(order))
    await order_service.publish(Topics.DELIVERY_FAILED, oid, failed(order, final=False))
    await order_service.publish(Topics.DELIVERY_FAILED, oid, failed(order, final=True, attempt=2))

    flagged = await order_service.wait_for_order(oid, fulfilment_status="delivery_failed")
    listed = await order_service.http.get(
        "/v1/orders",
        params={"needs_attention": "true", "campaign_id": order["campaign_id"]},
        headers=order_service.auth("ops"),
    )
    await order_service.publish(Topics.DELIVERY_SUCCEEDED, oid, delivered(order, attempt=3))
    completed = await order_service.wait_for_order(oid, state="completed")

    assert flagged["needs_attention"] is True
    assert "bounced" in flagged["status_reason"]
    assert [o["order_id"] for o in listed.json()["items"]] == [oid]
    assert completed["needs_attention"] is False


async def test_a_redelivered_event_changes_nothing(order_service: OrderService) -> None:
    [order] = await new_orders(order_service)
    oid = order["order_id"]
    envelope = Envelope.new(event_type=Topics.VOUCHER_ISSUED, producer="voucher", data=issued(order))

    await order_service.publish_raw(Topics.VOUCHER_ISSUED, oid, envelope)
    await order_service.publish_raw(Topics.VOUCHER_ISSUED, oid, envelope)
    # Same key, same partition: once this one is on the timeline, both copies before it were handled.
    marker = await order_service.publish(Topics.VOUCHER_ISSUED, oid, issued(order))

    async def marker_seen() -> bool:
        timeline = (await order_service.order(oid))["timeline"]
        return any(t["cause_event_id"] == str(marker.event_id) for t in timeline)

    await wait_until(marker_seen, what="the marker event handled")
    final = await order_service.order(oid)

    assert [(t["event"], t["applied"]) for t in final["timeline"]] == [
        ("created", True),
        ("voucher.issued", True),
        ("voucher.issued", False),
    ]
    assert final["timeline"][1]["cause_event_id"] == str(envelope.event_id)
    changes = await order_service.wait_published(Topics.ORDER_STATE_CHANGED, 2, order_id=oid)
    assert len(changes) == 2


async def test_admin_cancels_a_pending_order_once_and_a_completed_one_answers_409(
    order_service: OrderService,
) -> None:
    pending, finished = await new_orders(order_service, count=2)
    await order_service.publish(Topics.DELIVERY_SUCCEEDED, finished["order_id"], delivered(finished))
    await order_service.wait_for_order(finished["order_id"], state="completed")

    cancelled = await order_service.http.post(
        f"/v1/orders/{pending['booking_id']}/cancel",
        json={"reason": "left the company"},
        headers=order_service.auth("admin"),
    )
    again = await order_service.http.post(
        f"/v1/orders/{pending['order_id']}/cancel",
        json={"reason": "again"},
        headers=order_service.auth("ops"),
    )
    refused = await order_service.http.post(
        f"/v1/orders/{finished['order_id']}/cancel", json={"reason": "too late"}, headers=order_service.auth()
    )
    forbidden = await order_service.http.post(
        f"/v1/orders/{pending['order_id']}/cancel",
        json={"reason": "x"},
        headers=order_service.auth("support_agent"),
    )
    no_reason = await order_service.http.post(
        f"/v1/orders/{pending['order_id']}/cancel", json={}, headers=order_service.auth()
    )

    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert (body["state"], body["fulfilment_status"], body["status_reason"]) == (
        "cancelled",
        None,
        "left the company",
    )
    assert body["timeline"][-1]["actor"] == "admin:admin-tester"
    assert again.status_code == 200
    assert again.json()["timeline"][-1]["applied"] is False
    assert refused.status_code == 409
    assert refused.json()["code"] == "order_completed"
    assert forbidden.status_code == 403
    assert no_reason.status_code == 422
    changes = await order_service.wait_published(Topics.ORDER_STATE_CHANGED, 2, order_id=pending["order_id"])
    assert [c["state"] for c in changes] == ["pending", "cancelled"]
    audit = await order_service.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE subject_id = $1", pending["order_id"]
    )
    assert audit == 1


async def test_a_cancel_request_on_the_topic_cancels_by_external_ref_and_later_events_are_only_recorded(
    order_service: OrderService,
) -> None:
    [order] = await new_orders(order_service)
    oid = order["order_id"]

    await order_service.publish(
        Topics.ORDER_CANCEL_REQUESTED,
        order["external_ref"],
        OrderCancelRequested(
            external_ref=order["external_ref"], reason="eligibility changed", requested_by="hris:sap"
        ),
    )
    await order_service.wait_for_order(oid, state="cancelled")
    await order_service.publish(Topics.DELIVERY_SUCCEEDED, oid, delivered(order))
    final = await order_service.wait_for_order(oid, late_events=1)

    assert final["state"] == "cancelled"
    assert final["timeline"][1]["actor"] == "hris:sap"
    assert (final["timeline"][2]["event"], final["timeline"][2]["late"]) == ("delivery.succeeded", True)


async def test_a_cancel_request_for_a_completed_order_is_recorded_and_refused(
    order_service: OrderService,
) -> None:
    order = await delivered_order(order_service)
    oid = order["order_id"]

    await order_service.publish(
        Topics.ORDER_CANCEL_REQUESTED, oid, OrderCancelRequested(order_id=oid, reason="oops")
    )
    final = await order_service.wait_for_order(oid, late_events=1)

    assert final["state"] == "completed"
    assert final["timeline"][-1]["applied"] is False


async def test_a_storefront_request_creates_one_order_however_often_it_is_sent(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    request = OrderCreateRequested(
        redemption_id=uuid.uuid4(),
        idempotency_key=f"redeem-{uuid.uuid4().hex[:8]}",
        member_id=f"m-store-{uuid.uuid4().hex[:6]}",
        campaign_id=campaign,
        reward_id="gift-card",
        points=500,
        email="buyer@example.com",
    )
    sent = [
        await order_service.publish(
            Topics.ORDER_CREATE_REQUESTED, str(request.redemption_id), request, producer="redemption"
        )
        for _ in range(3)
    ]

    async def all_handled() -> bool:
        handled = await order_service.pool.fetchval(
            "SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", [e.event_id for e in sent]
        )
        return handled == 3

    await wait_until(all_handled, what="the three requests handled")
    [change] = await order_service.wait_published(
        Topics.ORDER_STATE_CHANGED, 1, redemption_id=request.redemption_id
    )
    await order_service.wait_published(Topics.DELIVERY_REQUESTED, 1, order_id=change["order_id"])
    listed = await order_service.http.get(
        "/v1/orders",
        params={"source": "storefront", "member_id": request.member_id},
        headers=order_service.auth("auditor"),
    )
    assert listed.json()["total"] == 1
    assert listed.json()["items"][0]["source"] == "storefront"
    assert change["state"] == "pending"


async def test_a_storefront_request_for_an_unknown_campaign_becomes_a_cancelled_order(
    order_service: OrderService,
) -> None:
    request = OrderCreateRequested(
        redemption_id=uuid.uuid4(),
        idempotency_key=f"redeem-{uuid.uuid4().hex[:8]}",
        member_id="m-store",
        campaign_id="no-such-campaign",
        reward_id="gift-card",
        points=500,
        email="buyer@example.com",
    )
    await order_service.publish(Topics.ORDER_CREATE_REQUESTED, str(request.redemption_id), request)

    changes = await order_service.wait_published(
        Topics.ORDER_STATE_CHANGED, 2, redemption_id=request.redemption_id
    )

    assert [(c["state"], c["reason"]) for c in changes] == [
        ("pending", "created"),
        ("cancelled", "unknown_campaign"),
    ]
    assert not await order_service.published(Topics.DELIVERY_REQUESTED, order_id=changes[0]["order_id"])

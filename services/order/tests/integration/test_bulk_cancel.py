"""Bulk cancellation by the listing's filters: dry run, cap, skipped orders, and approval above a size."""

from __future__ import annotations

from typing import Any

import pytest

from chassis.tests.approvals_support import decide
from contracts.topics import Topics

from .conftest import OrderService
from .test_batch_approvals import person
from .test_order_lifecycle import delivered, new_orders

LIMITS = {"ORCHARD_ORDER_BULK_CANCEL_MAX_ORDERS": 4, "ORCHARD_ORDER_BULK_CANCEL_APPROVAL_ABOVE": 2}
pytestmark = pytest.mark.parametrize("order_service", [LIMITS], indirect=True)


async def bulk(service: OrderService, headers: dict[str, str] | None = None, **params: Any) -> Any:
    body = {"reason": params.pop("reason", "campaign withdrawn"), "dry_run": params.pop("dry_run", False)}
    return await service.http.post(
        "/v1/orders/cancel", params=params, json=body, headers=headers or service.auth("ops")
    )


async def three_orders_one_completed(service: OrderService) -> list[dict[str, Any]]:
    orders = await new_orders(service, count=3)
    finished = orders[2]
    await service.publish(Topics.DELIVERY_SUCCEEDED, finished["order_id"], delivered(finished))
    await service.wait_for_order(finished["order_id"], state="completed")
    return orders


async def test_a_dry_run_says_which_orders_would_be_cancelled_and_changes_nothing(
    order_service: OrderService,
) -> None:
    orders = await three_orders_one_completed(order_service)
    campaign = orders[0]["campaign_id"]

    answer = await bulk(order_service, campaign_id=campaign, dry_run=True)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["dry_run"], body["matched"], body["cancellable"], body["cancelled"]) == (True, 3, 2, 0)
    assert (body["skipped_completed"], body["skipped_cancelled"]) == (1, 0)
    assert {o["order_id"] for o in body["orders"]} == {orders[0]["order_id"], orders[1]["order_id"]}
    states = await order_service.pool.fetch("SELECT state FROM orders WHERE campaign_id = $1", campaign)
    assert sorted(r["state"] for r in states) == ["completed", "pending", "pending"]


async def test_bulk_cancel_cancels_each_pending_order_as_the_single_cancel_does_and_skips_finished_ones(
    order_service: OrderService,
) -> None:
    orders = await three_orders_one_completed(order_service)
    campaign = orders[0]["campaign_id"]
    await order_service.http.post(
        f"/v1/orders/{orders[1]['order_id']}/cancel", json={"reason": "left"}, headers=order_service.auth()
    )

    answer = await bulk(order_service, campaign_id=campaign, reason="budget withdrawn")
    again = await bulk(order_service, campaign_id=campaign)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["matched"], body["cancelled"], body["skipped_completed"], body["skipped_cancelled"]) == (
        3,
        1,
        1,
        1,
    )
    assert [o["order_id"] for o in body["orders"]] == [orders[0]["order_id"]]
    assert (again.json()["cancelled"], again.json()["skipped_cancelled"]) == (0, 2)
    order = await order_service.order(orders[0]["order_id"])
    assert (order["state"], order["status_reason"]) == ("cancelled", "budget withdrawn")
    assert order["timeline"][-1]["actor"] == "ops:ops-tester"
    changes = await order_service.wait_published(
        Topics.ORDER_STATE_CHANGED, 2, order_id=orders[0]["order_id"]
    )
    assert [(c["state"], c["reason"]) for c in changes] == [
        ("pending", "created"),
        ("cancelled", "budget withdrawn"),
    ]
    audited = await order_service.pool.fetch(
        "SELECT action, details->>'reason' AS reason FROM audit_log WHERE subject_id = $1",
        orders[0]["order_id"],
    )
    assert [(a["action"], a["reason"]) for a in audited] == [("order.cancelled", "budget withdrawn")]
    assert (await order_service.order(orders[2]["order_id"]))["state"] == "completed"


async def test_a_bulk_cancel_needs_a_filter_a_reason_a_cancelling_role_and_stays_under_the_cap(
    order_service: OrderService,
) -> None:
    orders = await new_orders(order_service, count=5)
    order = orders[0]

    unfiltered = await bulk(order_service)
    no_reason = await order_service.http.post(
        "/v1/orders/cancel",
        params={"campaign_id": order["campaign_id"]},
        json={"dry_run": True},
        headers=order_service.auth(),
    )
    agent = await bulk(order_service, order_service.auth("support_agent"), campaign_id=order["campaign_id"])
    too_many = await bulk(order_service, campaign_id=order["campaign_id"])
    bad_filter = await bulk(order_service, state="lost")

    assert (unfiltered.status_code, unfiltered.json()["code"]) == (422, "filter_required")
    assert no_reason.status_code == 422
    assert "reason" in no_reason.text
    assert agent.status_code == 403
    assert (too_many.status_code, too_many.json()["code"]) == (422, "too_many_orders")
    assert "narrow" in too_many.json()["detail"]
    assert bad_filter.status_code == 422
    assert {(await order_service.order(o["order_id"]))["state"] for o in orders} == {"pending"}


async def test_a_bulk_cancel_above_the_threshold_waits_for_another_approver(
    order_service: OrderService,
) -> None:
    orders = await new_orders(order_service, count=3)
    campaign = orders[0]["campaign_id"]

    answer = await bulk(order_service, person(order_service, "omar", "ops"), campaign_id=campaign)

    assert answer.status_code == 202, answer.text
    approval_id = answer.json()["approval_id"]
    assert "Cancel 3 pending orders" in answer.json()["summary"]
    assert {(await order_service.order(o["order_id"]))["state"] for o in orders} == {"pending"}
    own = await decide(
        order_service.http, approval_id, "approve", person(order_service, "omar", "ops", "approver")
    )
    assert own.status_code == 403
    approved = await decide(
        order_service.http, approval_id, "approve", person(order_service, "pia", "approver")
    )

    assert approved.status_code == 200, approved.text
    assert approved.json()["result"]["cancelled"] == 3
    for o in orders:
        cancelled = await order_service.order(o["order_id"])
        assert (cancelled["state"], cancelled["timeline"][-1]["actor"]) == ("cancelled", "ops:omar")
    assert (
        await order_service.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'order.cancelled'"
            " AND subject_id = ANY($1::text[])",
            [str(o["order_id"]) for o in orders],
        )
        == 3
    )

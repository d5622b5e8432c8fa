"""Orders per hour by state, counted by the database: hours are UTC, empty hours are zeros, the
filters narrow the counts, test orders stay apart, and a period too long or upside down is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.topics import Topics

from .conftest import OrderService, voucher_record
from .test_order_lifecycle import delivered

NOON = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


async def orders_created_at(
    service: OrderService, campaign_id: str, *moments: datetime
) -> list[dict[str, Any]]:
    """One order per moment, its creation time set to that moment (orders are created now otherwise)."""
    records = [voucher_record(campaign_id) for _ in moments]
    await service.finished_batch(await service.upload_json(records))
    orders = [await service.order_of(r["external_ref"]) for r in records]
    for order, moment in zip(orders, moments, strict=True):
        await service.pool.execute(
            "UPDATE orders SET created_at = $2 WHERE order_id = $1", order["order_id"], moment
        )
    return orders


async def hourly(service: OrderService, role: str = "finance", **params: str) -> Any:
    return await service.http.get("/v1/orders/stats/hourly", params=params, headers=service.auth(role))


async def test_orders_are_counted_per_utc_hour_of_creation_by_state_with_empty_hours_as_zeros(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    cancelled, completed, *_ = await orders_created_at(
        order_service,
        campaign,
        NOON + timedelta(minutes=5),
        NOON + timedelta(minutes=59),
        NOON + timedelta(hours=2, minutes=1),
        NOON - timedelta(minutes=1),  # the hour before the period
    )
    answer = await order_service.http.post(
        f"/v1/orders/{cancelled['order_id']}/cancel", json={"reason": "test"}, headers=order_service.auth()
    )
    assert answer.status_code == 200, answer.text
    await order_service.publish(
        Topics.DELIVERY_SUCCEEDED, completed["order_id"], delivered(completed), producer="delivery"
    )
    await order_service.wait_for_order(completed["order_id"], state="completed")

    response = await hourly(
        order_service,
        campaign_id=campaign,
        **{"from": NOON.isoformat(), "to": (NOON + timedelta(hours=3)).isoformat()},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["from"], body["to"], body["test"]) == ("2026-11-20T12:00:00Z", "2026-11-20T15:00:00Z", False)
    assert [(h["hour"], h["pending"], h["completed"], h["cancelled"], h["total"]) for h in body["hours"]] == [
        ("2026-11-20T12:00:00Z", 0, 1, 1, 2),
        ("2026-11-20T13:00:00Z", 0, 0, 0, 0),
        ("2026-11-20T14:00:00Z", 1, 0, 0, 1),
    ]


async def test_hours_are_utc_whatever_offset_the_period_is_given_in(order_service: OrderService) -> None:
    campaign = await order_service.campaign()
    await orders_created_at(order_service, campaign, NOON + timedelta(minutes=40))

    response = await hourly(
        order_service,
        campaign_id=campaign,
        **{"from": "2026-11-20T17:30:00+05:30", "to": "2026-11-20T18:30:00+05:30"},
    )

    assert response.status_code == 200, response.text
    hours = {h["hour"]: h["total"] for h in response.json()["hours"]}
    assert hours == {"2026-11-20T12:00:00Z": 1}


async def test_member_and_test_filters_narrow_the_counts(order_service: OrderService) -> None:
    campaign = await order_service.campaign()
    mine, _ = await orders_created_at(order_service, campaign, NOON, NOON)
    period = {
        "from": NOON.isoformat(),
        "to": (NOON + timedelta(hours=1)).isoformat(),
        "campaign_id": campaign,
    }

    everyone = (await hourly(order_service, **period)).json()["hours"]
    member = (await hourly(order_service, member_id=mine["member_id"], **period)).json()["hours"]
    tests = (await hourly(order_service, test="true", **period)).json()["hours"]

    assert [h["total"] for h in everyone] == [2]
    assert [h["total"] for h in member] == [1]
    assert [h["total"] for h in tests] == [0]


async def test_a_period_over_31_days_or_ending_before_it_starts_is_refused_naming_from(
    order_service: OrderService,
) -> None:
    too_long = await hourly(
        order_service, **{"from": NOON.isoformat(), "to": (NOON + timedelta(days=31, hours=1)).isoformat()}
    )
    upside_down = await hourly(
        order_service, **{"from": NOON.isoformat(), "to": (NOON - timedelta(hours=1)).isoformat()}
    )
    naive = await hourly(order_service, **{"from": "2026-11-20T12:00:00"})

    assert too_long.status_code == 422
    assert too_long.json()["errors"] == [
        {"field": "query.from", "code": "range_too_long", "message": "The period may span at most 31 days."}
    ]
    assert upside_down.status_code == 422
    assert upside_down.json()["errors"][0]["field"] == "query.from"
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "query.from"


async def test_the_hourly_figures_are_read_by_the_order_listings_roles_only(
    order_service: OrderService,
) -> None:
    allowed = [
        (await hourly(order_service, role)).status_code
        for role in ("admin", "ops", "auditor", "support_agent")
    ]
    refused = [(await hourly(order_service, role)).status_code for role in ("member", "partner", "hris")]

    assert allowed == [200, 200, 200, 200]
    assert refused == [403, 403, 403]

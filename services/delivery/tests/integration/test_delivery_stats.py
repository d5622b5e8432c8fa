"""Deliveries per channel (sent, failed, pending) counted in the service's own tables over a period:
what every replica answers alike, whatever it sent itself or since when it runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts.orders import OrderState
from contracts.values import Channel

from .conftest import request_for, state_changed, voucher_for


async def stats(service: Any, role: str = "ops", **params: str) -> Any:
    return await service.http.get("/v1/deliveries/stats", params=params, headers=service.token(role))


async def test_each_channel_counts_its_sent_failed_and_pending_deliveries_of_the_period(delivery_service):
    service = await delivery_service()
    # the broker is shared: other tests' requests reach this service too, so this one counts its campaign
    campaign = f"camp-{uuid.uuid4().hex[:8]}"
    sent, failed, waiting, codeless, cancelled, old, rehearsal = (uuid.uuid4() for _ in range(7))
    for order_id, channel, phone in (
        (sent, Channel.EMAIL, None),
        (failed, Channel.SMS, "+15005550001"),
        (waiting, Channel.WHATSAPP, "+447700900123"),
        (cancelled, Channel.EMAIL, None),
        (old, Channel.EMAIL, None),
    ):
        await service.publish(request_for(order_id, channel=channel, phone=phone, campaign_id=campaign))
    await service.publish(state_changed(cancelled, OrderState.CANCELLED, campaign_id=campaign))
    rehearsing = request_for(rehearsal, campaign_id=campaign).model_copy(update={"test": True})
    await service.publish(rehearsing)
    for order_id in (sent, failed, codeless, old, rehearsal):
        await service.publish(voucher_for(order_id, campaign_id=campaign))
    for order_id, status in (
        (sent, "sent"),
        (failed, "failed"),
        (waiting, "waiting"),
        (codeless, "waiting"),
        (cancelled, "cancelled"),
        (old, "sent"),
        (rehearsal, "sent"),
    ):
        await service.wait_status(order_id, status)
    await service.pool.execute(
        "UPDATE deliveries SET created_at = now() - interval '40 days' WHERE order_id = $1", old
    )

    response = await stats(service, campaign_id=campaign)
    tests = await stats(service, campaign_id=campaign, test="true")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["test"] is False
    assert datetime.fromisoformat(body["to"]) - datetime.fromisoformat(body["from"]) == timedelta(days=7)
    assert body["channels"] == [
        {"channel": "email", "sent": 1, "failed": 0, "pending": 0},
        {"channel": "sms", "sent": 0, "failed": 1, "pending": 0},
        {"channel": "whatsapp", "sent": 0, "failed": 0, "pending": 1},
        {"channel": None, "sent": 0, "failed": 0, "pending": 1},
    ]
    assert tests.json()["channels"] == [{"channel": "email", "sent": 1, "failed": 0, "pending": 0}]


async def test_a_period_before_any_delivery_counts_nothing(delivery_service):
    service = await delivery_service()
    order_id = uuid.uuid4()
    await service.join(order_id)
    last_year = datetime.now(UTC) - timedelta(days=365)

    response = await stats(
        service, **{"from": last_year.isoformat(), "to": (last_year + timedelta(days=1)).isoformat()}
    )

    assert response.status_code == 200, response.text
    assert response.json()["channels"] == []


async def test_a_period_over_31_days_or_ending_before_it_starts_is_refused_naming_from(delivery_service):
    service = await delivery_service()
    start = datetime(2026, 11, 1, tzinfo=UTC)

    too_long = await stats(
        service, **{"from": start.isoformat(), "to": (start + timedelta(days=32)).isoformat()}
    )
    upside_down = await stats(service, **{"from": start.isoformat(), "to": start.isoformat()})

    assert too_long.status_code == 422
    assert too_long.json()["errors"][0] == {
        "field": "query.from",
        "code": "range_too_long",
        "message": "The period may span at most 31 days.",
    }
    assert upside_down.status_code == 422
    assert upside_down.json()["errors"][0]["code"] == "after_to"


async def test_the_figures_are_read_by_the_delivery_reviewers_only(delivery_service):
    service = await delivery_service()

    allowed = [(await stats(service, role)).status_code for role in ("admin", "ops", "support_agent")]
    refused = [(await stats(service, role)).status_code for role in ("finance", "auditor", "member")]

    assert allowed == [200, 200, 200]
    assert refused == [403, 403, 403]

"""Signed webhooks against a real delivery service (Kafka, Postgres) and real local HTTP receivers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from chassis.testing import produce, wait_until
from contracts.envelope import Envelope
from contracts.orders import OrderState
from contracts.registry import for_payload

from .conftest import DeliveryService, request_for, settle, state_changed, voucher_for
from .webhook_receiver import Receiver, webhook_receiver

FAST = {
    "ORCHARD_WEBHOOK_RETRY_BASE": 0.05,
    "ORCHARD_WEBHOOK_RETRY_MAX": 0.2,
    "ORCHARD_WEBHOOK_POLL_INTERVAL": 0.1,
    "ORCHARD_WEBHOOK_TIMEOUT": 5.0,
    "ORCHARD_WEBHOOK_LEASE": 10.0,
}


async def register(
    service: DeliveryService, receiver: Receiver, events: list[str], path: str = "/hook"
) -> dict[str, Any]:
    assert service.http is not None
    answer = await service.http.post(
        "/v1/webhooks", json={"url": receiver.url(path), "events": events}, headers=service.token("ops")
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    receiver.secrets.append(created["secret"])
    return created


async def publish_state(
    service: DeliveryService, order_id: uuid.UUID, state: OrderState, occurred_at: datetime | None = None
) -> Envelope[Any]:
    data = state_changed(order_id, state)
    spec = for_payload(data)
    env = Envelope.new(event_type=spec.name, producer="test", data=data, occurred_at=occurred_at)
    await produce(service.bootstrap, spec.name, [(spec.key_of(data).encode(), env.to_bytes())])
    return env


async def log_of(service: DeliveryService, webhook_id: str) -> list[dict[str, Any]]:
    assert service.http is not None
    answer = await service.http.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=service.token("admin"))
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def received_events(receiver: Receiver, event_ids: set[str], count: int, path: str = "/hook") -> None:
    async def enough() -> bool:
        return len([r for r in receiver.on(path) if r.event_id in event_ids and r.answered]) >= count

    await wait_until(enough, timeout=30, what=f"{count} webhook POSTs on {path}")


async def test_a_status_event_is_posted_once_signed_to_each_webhook_that_wants_it_and_no_other(
    delivery_service,
):
    service = await delivery_service(**FAST)
    async with webhook_receiver() as receiver:
        orders = await register(service, receiver, ["order.state_changed"], "/orders")
        await register(service, receiver, ["delivery.failed"], "/failures")
        order_id = uuid.uuid4()

        env = await publish_state(service, order_id, OrderState.CANCELLED)

        await received_events(receiver, {str(env.event_id)}, 1, "/orders")
        await settle(1.0)
        posts = [r for r in receiver.received if r.event_id == str(env.event_id)]
        assert len(posts) == 1
        post = posts[0]
        assert post.path == "/orders"
        assert post.verified
        assert post.headers["orchard-signature"].startswith("t=")
        assert post.headers["content-type"] == "application/json"
        assert post.event == json.loads(env.to_bytes())
        [entry] = [e for e in await log_of(service, orders["webhook_id"]) if e["event_id"] == str(env.event_id)]
        assert entry["status"] == "delivered"
        assert entry["last_status_code"] == 200
        assert entry["attempts"] == 1


async def test_the_secret_is_answered_once_and_never_listed(delivery_service):
    service = await delivery_service(**FAST)
    assert service.http is not None
    async with webhook_receiver() as receiver:
        created = await register(service, receiver, ["order.state_changed"])
        assert created["secret"].startswith("whsec_")

        listed = await service.http.get("/v1/webhooks", headers=service.token("admin"))

        assert listed.status_code == 200
        assert created["secret"] not in listed.text
        assert [w["webhook_id"] for w in listed.json()["items"]] == [created["webhook_id"]]
        stored = await service.pool.fetchval("SELECT secret_ciphertext FROM webhooks")
        assert created["secret"].encode() not in stored


async def test_webhooks_are_managed_only_by_admin_and_ops_and_only_for_status_topics(delivery_service):
    service = await delivery_service(**FAST)
    assert service.http is not None
    body = {"url": "http://127.0.0.1:9/hook", "events": ["order.state_changed"]}

    as_agent = await service.http.post("/v1/webhooks", json=body, headers=service.token("support_agent"))
    codes = await service.http.post(
        "/v1/webhooks", json={**body, "events": ["voucher.issued"]}, headers=service.token("admin")
    )
    contacts = await service.http.post(
        "/v1/webhooks", json={**body, "events": ["delivery.requested"]}, headers=service.token("admin")
    )

    assert as_agent.status_code == 403
    assert codes.status_code == 422 and codes.json()["code"] == "unknown_events"
    assert contacts.status_code == 422
    assert await service.pool.fetchval("SELECT count(*) FROM webhooks") == 0

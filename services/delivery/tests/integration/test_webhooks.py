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
    "ORCHARD_DELIVERY_WEBHOOK_RETRY_BASE": 0.05,
    "ORCHARD_DELIVERY_WEBHOOK_RETRY_MAX": 0.2,
    "ORCHARD_DELIVERY_WEBHOOK_POLL_INTERVAL": 0.1,
    "ORCHARD_DELIVERY_WEBHOOK_TIMEOUT": 5.0,
    "ORCHARD_DELIVERY_WEBHOOK_LEASE": 10.0,
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
    service: DeliveryService | str,
    order_id: uuid.UUID,
    state: OrderState,
    occurred_at: datetime | None = None,
) -> Envelope[Any]:
    """`order.state_changed` for the order, to the service's broker (or the bootstrap servers given)."""
    data = state_changed(order_id, state)
    spec = for_payload(data)
    env = Envelope.new(event_type=spec.name, producer="test", data=data, occurred_at=occurred_at)
    bootstrap = service if isinstance(service, str) else service.bootstrap
    await produce(bootstrap, spec.name, [(spec.key_of(data).encode(), env.to_bytes())])
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
        [entry] = [
            e for e in await log_of(service, orders["webhook_id"]) if e["event_id"] == str(env.event_id)
        ]
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
    assert codes.status_code == 422
    assert codes.json()["code"] == "unknown_events"
    assert contacts.status_code == 422
    assert await service.pool.fetchval("SELECT count(*) FROM webhooks") == 0


async def test_a_failing_endpoint_is_retried_with_backoff_then_disabled_reported_and_counted(
    delivery_service,
):
    async with webhook_receiver(lambda r: (500, 0.0) if r.path == "/hook" else (200, 0.0)) as receiver:
        service = await delivery_service(
            **FAST,
            ORCHARD_DELIVERY_WEBHOOK_DISABLE_AFTER=1.5,
            ORCHARD_DELIVERY_NOTIFY_SLACK_URL=receiver.url("/slack"),
            ORCHARD_DELIVERY_NOTIFY_INTERVAL=0.2,
        )
        assert service.http is not None
        webhook = await register(service, receiver, ["order.state_changed"])
        env = await publish_state(service, uuid.uuid4(), OrderState.CANCELLED)

        async def disabled() -> bool:
            answer = await service.http.get(f"/v1/webhooks/{webhook['webhook_id']}", headers=service.token())
            return answer.json()["enabled"] is False

        await wait_until(disabled, timeout=30, what="the failing webhook to be disabled")
        tries = [r for r in receiver.on("/hook") if r.event_id == str(env.event_id)]
        assert len(tries) >= 3
        assert all(r.verified for r in tries)
        [entry] = await log_of(service, webhook["webhook_id"])
        assert entry["status"] == "pending"
        assert entry["last_status_code"] == 500
        assert entry["last_error"] == "HTTP 500"

        async def reported() -> bool:
            return any(b"was disabled" in r.body for r in receiver.on("/slack"))

        await wait_until(reported, timeout=15, what="the disabled webhook to be posted to Slack")
        metrics = await service.http.get("/metrics")
        assert "orchard_webhooks_disabled_total 1.0" in metrics.text

        count = len(receiver.on("/hook"))
        await settle(1.0)
        assert len(receiver.on("/hook")) == count  # a disabled webhook is sent nothing

        receiver.behaviour = lambda r: (204, 0.0)
        enabled = await service.http.post(
            f"/v1/webhooks/{webhook['webhook_id']}/enable", headers=service.token("ops")
        )
        assert enabled.status_code == 200
        assert enabled.json()["enabled"] is True

        async def delivered() -> bool:
            return (await log_of(service, webhook["webhook_id"]))[0]["status"] == "delivered"

        await wait_until(delivered, timeout=15, what="the event held while disabled to be delivered")


async def test_one_orders_events_reach_a_webhook_in_order_even_when_the_first_is_retried(delivery_service):
    failed_once: set[str] = set()

    def first_try_fails(request: Any) -> tuple[int, float]:
        if request.event["data"]["state"] == "pending" and request.event_id not in failed_once:
            failed_once.add(request.event_id)
            return 503, 0.0
        return 200, 0.0

    async with webhook_receiver(first_try_fails) as receiver:
        service = await delivery_service(
            **{**FAST, "ORCHARD_DELIVERY_WEBHOOK_RETRY_BASE": 0.5, "ORCHARD_DELIVERY_WEBHOOK_RETRY_MAX": 1.0}
        )
        await register(service, receiver, ["order.state_changed"])
        order_id, other_order = uuid.uuid4(), uuid.uuid4()

        first = await publish_state(service, order_id, OrderState.PENDING)
        second = await publish_state(service, order_id, OrderState.CANCELLED)
        unrelated = await publish_state(service, other_order, OrderState.CANCELLED)

        ids = {str(first.event_id), str(second.event_id), str(unrelated.event_id)}
        await received_events(receiver, ids, 4)
        order = [r.event_id for r in receiver.received if r.event_id in ids]
        assert order.index(str(unrelated.event_id)) < order.index(str(second.event_id))
        assert order.count(str(first.event_id)) == 2
        assert order.index(str(second.event_id)) > len(order) - 1 - order[::-1].index(str(first.event_id))


async def test_replay_sends_again_the_events_a_webhook_got_since_the_time_given(delivery_service):
    service = await delivery_service(**FAST)
    assert service.http is not None
    async with webhook_receiver() as receiver:
        webhook = await register(service, receiver, ["order.state_changed"])
        now = datetime.now(UTC)
        old = await publish_state(
            service, uuid.uuid4(), OrderState.CANCELLED, occurred_at=now - timedelta(hours=2)
        )
        recent = [await publish_state(service, uuid.uuid4(), OrderState.COMPLETED) for _ in range(2)]
        ids = {str(old.event_id), *(str(e.event_id) for e in recent)}
        await received_events(receiver, ids, 3)

        answer = await service.http.post(
            f"/v1/webhooks/{webhook['webhook_id']}/replay",
            json={"since": (now - timedelta(minutes=5)).isoformat()},
            headers=service.token("admin"),
        )

        assert answer.status_code == 202, answer.text
        assert answer.json()["requeued"] == 2
        await received_events(receiver, ids, 5)
        await settle(0.5)
        counts = {i: [r.event_id for r in receiver.received].count(i) for i in ids}
        assert counts == {str(old.event_id): 1, **{str(e.event_id): 2 for e in recent}}
        assert all(r.verified for r in receiver.received)
        naive = await service.http.post(
            f"/v1/webhooks/{webhook['webhook_id']}/replay",
            json={"since": "2026-01-01T00:00:00"},
            headers=service.token("admin"),
        )
        assert naive.status_code == 422


async def test_after_a_rotation_both_secrets_sign_until_the_window_ends(delivery_service):
    service = await delivery_service(**FAST, ORCHARD_DELIVERY_WEBHOOK_ROTATION_OVERLAP=2.0)
    assert service.http is not None
    async with webhook_receiver() as receiver:
        webhook = await register(service, receiver, ["order.state_changed"])
        old_secret = receiver.secrets[0]
        rotated = await service.http.post(
            f"/v1/webhooks/{webhook['webhook_id']}/secret", headers=service.token("admin")
        )
        assert rotated.status_code == 200
        new_secret = rotated.json()["secret"]
        assert new_secret != old_secret

        during = await publish_state(service, uuid.uuid4(), OrderState.CANCELLED)
        await received_events(receiver, {str(during.event_id)}, 1)
        await asyncio.sleep(2.5)
        after = await publish_state(service, uuid.uuid4(), OrderState.CANCELLED)
        await received_events(receiver, {str(after.event_id)}, 1)

        [sent_during] = [r for r in receiver.received if r.event_id == str(during.event_id)]
        [sent_after] = [r for r in receiver.received if r.event_id == str(after.event_id)]
        receiver.secrets[:] = [new_secret]
        from .webhook_receiver import verify

        header, body = sent_during.headers["orchard-signature"], sent_during.body
        assert header.count("v1=") == 2
        assert verify(header, body, old_secret)
        assert verify(header, body, new_secret)
        header, body = sent_after.headers["orchard-signature"], sent_after.body
        assert header.count("v1=") == 1
        assert verify(header, body, new_secret)
        assert not verify(header, body, old_secret)


async def test_a_ping_is_a_signed_test_event_in_the_delivery_log(delivery_service):
    service = await delivery_service(**FAST)
    assert service.http is not None
    async with webhook_receiver() as receiver:
        webhook = await register(service, receiver, ["delivery.failed"])

        answer = await service.http.post(
            f"/v1/webhooks/{webhook['webhook_id']}/ping", headers=service.token()
        )

        assert answer.status_code == 202
        event_id = answer.json()["event_id"]
        await received_events(receiver, {event_id}, 1)
        [ping] = receiver.received
        assert ping.verified
        assert ping.event["event_type"] == "webhook.ping"
        assert ping.event["data"] == {"webhook_id": webhook["webhook_id"]}
        [entry] = await log_of(service, webhook["webhook_id"])
        assert entry["event_id"] == event_id


async def test_a_slow_endpoint_holds_back_neither_a_fast_one_nor_voucher_delivery(delivery_service):
    def slow_or_fast(request: Any) -> tuple[int, float]:
        return (200, 3.0) if request.path == "/slow" else (200, 0.0)

    async with webhook_receiver(slow_or_fast) as receiver:
        service = await delivery_service(
            **FAST, ORCHARD_DELIVERY_WEBHOOK_CONCURRENCY=2, ORCHARD_DELIVERY_WEBHOOK_WORKERS=4
        )
        await register(service, receiver, ["order.state_changed"], "/slow")
        await register(service, receiver, ["order.state_changed"], "/fast")
        voucher_order = uuid.uuid4()
        began = time.monotonic()

        events = [await publish_state(service, uuid.uuid4(), OrderState.CANCELLED) for _ in range(10)]
        await service.publish(request_for(voucher_order))
        await service.publish(voucher_for(voucher_order))

        ids = {str(e.event_id) for e in events}
        await received_events(receiver, ids, 10, "/fast")
        fast_done = time.monotonic() - began
        await service.wait_status(voucher_order, "sent", timeout=10)
        voucher_done = time.monotonic() - began
        slow_seen = len([r for r in receiver.on("/slow") if r.event_id in ids])

        assert fast_done < 6.0, fast_done
        assert voucher_done < 6.0, voucher_done
        assert slow_seen <= 4  # at most two at a time, three seconds each
        live = await service.pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries d JOIN webhooks w USING (webhook_id)"
            " WHERE w.url LIKE '%/slow' AND d.status = 'sending'"
        )
        assert live <= 2


async def test_the_delivery_log_pages_newest_first_and_a_deleted_webhook_is_sent_nothing_more(
    delivery_service,
):
    service = await delivery_service(**FAST)
    assert service.http is not None
    async with webhook_receiver() as receiver:
        webhook = await register(service, receiver, ["order.state_changed"])
        url = f"/v1/webhooks/{webhook['webhook_id']}"
        events = [await publish_state(service, uuid.uuid4(), OrderState.CANCELLED) for _ in range(3)]
        await received_events(receiver, {str(e.event_id) for e in events}, 3)

        first = await service.http.get(f"{url}/deliveries?limit=2", headers=service.token())
        second = await service.http.get(
            f"{url}/deliveries?limit=2&cursor={first.json()['next_cursor']}", headers=service.token()
        )
        bad_cursor = await service.http.get(f"{url}/deliveries?cursor=%00", headers=service.token())
        deleted = await service.http.delete(url, headers=service.token("ops"))
        after = await publish_state(service, uuid.uuid4(), OrderState.CANCELLED)
        await settle(1.5)

        paged = [e["event_id"] for e in first.json()["items"] + second.json()["items"]]
        assert paged == [str(e.event_id) for e in reversed(events)]
        assert second.json()["next_cursor"] is None
        assert bad_cursor.status_code == 422
        assert deleted.status_code == 204
        assert (await service.http.get(url, headers=service.token())).status_code == 404
        assert (await service.http.delete(url, headers=service.token())).status_code == 404
        assert str(after.event_id) not in [r.event_id for r in receiver.received]
        assert await service.pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0
        audited = await service.pool.fetch(
            "SELECT action FROM audit_log WHERE subject_id = $1 ORDER BY seq", webhook["webhook_id"]
        )
        assert [r["action"] for r in audited] == ["webhook.created", "webhook.deleted"]

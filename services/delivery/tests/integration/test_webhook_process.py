"""The real process (`python -m services.delivery`) killed with SIGKILL while a webhook POST is in flight:
what a receiver acknowledged before the kill is never POSTed again, and the cut-off POST is repeated."""

from __future__ import annotations

import signal
import uuid

import asyncpg
import httpx

from chassis.auth import issue_token
from chassis.testing import wait_until
from contracts.orders import OrderState

from .test_webhooks import publish_state
from .webhook_receiver import Received, webhook_receiver


async def test_a_kill_9_mid_post_repeats_only_the_cut_off_post_and_nothing_already_acknowledged(
    registry_on_broker, service_db, tmp_path, delivery_process
):
    held: dict[str, str] = {}

    def hold_the_first_try_of_one_order(request: Received) -> tuple[int, float]:
        if request.event["data"]["order_id"] == held.get("order_id") and "try" not in held:
            held["try"] = request.event_id
            return 200, 60.0  # answered long after the process is gone
        return 200, 0.0

    delivery_process.env.update(
        {
            "ORCHARD_DELIVERY_WEBHOOK_TIMEOUT": "4",
            "ORCHARD_DELIVERY_WEBHOOK_LEASE": "5",
            "ORCHARD_DELIVERY_WEBHOOK_POLL_INTERVAL": "0.1",
            "ORCHARD_DELIVERY_WEBHOOK_RETRY_BASE": "0.1",
            "ORCHARD_DELIVERY_EMAIL_WORKERS": "0",
            "ORCHARD_DELIVERY_SMS_WORKERS": "0",
            "ORCHARD_DELIVERY_WHATSAPP_WORKERS": "0",
        }
    )
    settings = delivery_process.settings()
    token = {"Authorization": f"Bearer {issue_token(role='admin', sub='ops-1', settings=settings)}"}

    async with webhook_receiver(hold_the_first_try_of_one_order) as receiver:
        first = await delivery_process.start()
        async with httpx.AsyncClient(base_url=delivery_process.url) as client:
            created = await client.post(
                "/v1/webhooks", json={"url": receiver.url(), "events": ["order.state_changed"]}, headers=token
            )
        assert created.status_code == 201, created.text
        receiver.secrets.append(created.json()["secret"])
        pool = await asyncpg.create_pool(service_db.dsn, min_size=1, max_size=2)
        try:
            slow_order = uuid.uuid4()
            held["order_id"] = str(slow_order)
            fast = [
                await publish_state(registry_on_broker, uuid.uuid4(), OrderState.CANCELLED) for _ in range(5)
            ]
            slow = await publish_state(registry_on_broker, slow_order, OrderState.CANCELLED)
            fast_ids = [e.event_id for e in fast]

            async def acknowledged_and_held() -> bool:
                delivered = await pool.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
                    " AND event_id = ANY($1::uuid[])",
                    fast_ids,
                )
                return delivered == len(fast_ids) and "try" in held

            await wait_until(acknowledged_and_held, timeout=60, what="five acknowledged and one POST held")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            await delivery_process.start()

            async def all_delivered() -> bool:
                return (
                    await pool.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
                ) == 6

            await wait_until(all_delivered, timeout=90, what="every event to be delivered after the restart")
            slow_row = await pool.fetchrow(
                "SELECT * FROM webhook_deliveries WHERE event_id = $1", slow.event_id
            )
        finally:
            await pool.close()

    posts = [r.event_id for r in receiver.received]
    assert all(posts.count(str(i)) == 1 for i in fast_ids), posts
    assert posts.count(str(slow.event_id)) == 2
    assert all(r.verified for r in receiver.received)
    assert slow_row["attempts"] == 2

"""The real process (`python -m services.delivery`), killed with SIGKILL in the middle of a send."""

import signal
import uuid

import asyncpg
import httpx

from chassis.testing import wait_until
from contracts.values import Channel
from deploy.sinks.testing import fake_provider, smtp_sink

from .conftest import DeliveryService, request_for, voucher_for


async def test_a_send_cut_off_by_kill_9_is_flagged_unknown_after_restart_and_reaches_the_member_once(
    registry_on_broker, service_db, tmp_path, delivery_process
):
    async with (
        smtp_sink(tmp_path / "mail") as smtp,
        fake_provider(tmp_path / "messages", timeout_delay_s=4) as provider,
    ):
        delivery_process.env.update(
            {
                "ORCHARD_DELIVERY_SMTP_PORT": str(smtp.port),
                "ORCHARD_DELIVERY_SMS_BASE_URL": provider.base_url,
                "ORCHARD_DELIVERY_WHATSAPP_BASE_URL": provider.base_url,
                "ORCHARD_DELIVERY_PROVIDER_TIMEOUT": "10",
                "ORCHARD_DELIVERY_LEASE": "2",
                "ORCHARD_DELIVERY_RECOVERY_INTERVAL": "0.5",
            }
        )
        first = await delivery_process.start()
        async with httpx.AsyncClient() as client:
            await client.post(
                f"{provider.base_url}/_control/failures",
                json={"to": "+447700900999", "mode": "slow", "times": 1},
            )
        pool = await asyncpg.create_pool(service_db.dsn, min_size=1, max_size=2)
        service = DeliveryService(pool, registry_on_broker, smtp, provider)
        try:
            order_id = uuid.uuid4()
            await service.publish(request_for(order_id, channel=Channel.SMS, phone="+447700900999"))
            await service.publish(voucher_for(order_id))

            async def in_flight() -> bool:
                return len(await service.attempts(order_id)) == 1

            async def saved() -> bool:
                return any(m["to"] == "+447700900999" for m in provider.messages())

            await wait_until(in_flight, timeout=60, interval=0.05, what="the attempt to be recorded")
            # The provider has taken the message and holds its answer back: the process dies now.
            await wait_until(saved, timeout=15, interval=0.02, what="the provider to take the message")
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            await delivery_process.start()
            row = await service.wait_status(order_id, "sent", timeout=90)
            attempts = await service.attempts(order_id)
        finally:
            await pool.close()

    assert [a["outcome"] for a in attempts] == ["unknown", "succeeded"]
    assert attempts[0]["idempotency_key"] == attempts[1]["idempotency_key"]
    assert [m["to"] for m in provider.messages()].count("+447700900999") == 1
    assert row["attempts"] == 2

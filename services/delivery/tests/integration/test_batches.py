"""Batched sending: many claims per statement, one transaction holding their row locks for the sends,
outcomes and events recorded together, and the guarantees of a single send kept for each of them."""

import asyncio
import uuid

from chassis.testing import wait_until
from contracts.orders import OrderState
from contracts.values import Channel
from services.delivery import repository

from .conftest import request_for, state_changed, voucher_for


async def _queued(service, phones: list[str]) -> list[uuid.UUID]:
    orders = []
    for phone in phones:
        order_id = uuid.uuid4()
        await service.publish(request_for(order_id, channel=Channel.SMS, phone=phone))
        await service.publish(voucher_for(order_id))
        orders.append(order_id)
    for order_id in orders:
        await service.wait_status(order_id, "queued")
    return orders


def _sent_to(service, phone: str) -> int:
    return len([m for m in service.provider.messages() if m["to"] == phone])


async def test_a_batch_sends_each_claim_once_skips_one_cancelled_after_its_claim_and_publishes_each_success(
    delivery_service,
):
    service = await delivery_service(ORCHARD_SMS_WORKERS=0, ORCHARD_DELIVERY_CLAIM_BATCH=10)
    phones = [f"+4477009003{n:02d}" for n in range(5)]
    orders = await _queued(service, phones)

    async with service.pool.acquire() as conn:
        claimed = await repository.claim_due(conn, Channel.SMS, lease_s=60, limit=10)
        assert sorted(c["delivery_id"] for c in claimed) == sorted(
            [(await service.delivery(o))["delivery_id"] for o in orders]
        )
        # Claimed (its attempt on record) but cancelled before the batch takes the row locks.
        await service.publish(state_changed(orders[2], OrderState.CANCELLED))
        await service.wait_status(orders[2], "cancelled")
        held_elsewhere = await service.engine._send_batch(conn, Channel.SMS, claimed)

    assert held_elsewhere == []
    for n, order_id in enumerate(orders):
        attempts = await service.attempts(order_id)
        if n == 2:
            assert [a["outcome"] for a in attempts] == ["skipped"]
            assert _sent_to(service, phones[n]) == 0
            assert (await service.delivery(order_id))["code_ciphertext"] is None
        else:
            assert [a["outcome"] for a in attempts] == ["succeeded"]
            assert attempts[0]["provider_message_id"].startswith("SM")
            assert _sent_to(service, phones[n]) == 1
            assert (await service.delivery(order_id))["status"] == "sent"
    for n in (0, 1, 3, 4):
        [event] = await service.wait_events("delivery.succeeded", orders[n], 1)
        assert event["data"]["attempt"] == 1


async def test_a_claim_locked_by_another_transaction_is_left_out_of_the_batch_and_sent_on_its_own(
    delivery_service,
):
    service = await delivery_service(ORCHARD_SMS_WORKERS=0)
    phones = ["+447700900411", "+447700900412", "+447700900413"]
    orders = await _queued(service, phones)
    busy = (await service.delivery(orders[1]))["delivery_id"]

    async with service.pool.acquire() as conn, service.pool.acquire() as other:
        claimed = await repository.claim_due(conn, Channel.SMS, lease_s=60, limit=10)
        held = other.transaction()
        await held.start()
        await other.execute("SELECT 1 FROM deliveries WHERE delivery_id = $1 FOR UPDATE", busy)
        left = await service.engine._send_batch(conn, Channel.SMS, claimed)
        assert [r["delivery_id"] for r in left] == [busy]
        assert _sent_to(service, phones[1]) == 0

        # The worker then waits for that row alone (holding no other lock) and sends it.
        alone = asyncio.create_task(service.engine._attempt(conn, busy, left[0]["attempts"]))
        await asyncio.sleep(0.3)
        assert not alone.done()
        await held.commit()
        await alone

    for phone in phones:
        assert _sent_to(service, phone) == 1
    for order_id in orders:
        assert [a["outcome"] for a in await service.attempts(order_id)] == ["succeeded"]


async def test_a_provider_timeout_stops_the_batch_and_the_rest_is_queued_again_without_an_attempt(
    delivery_service,
):
    service = await delivery_service(
        ORCHARD_SMS_WORKERS=0,
        ORCHARD_PROVIDER_TIMEOUT=0.3,
        ORCHARD_DELIVERY_MAX_ATTEMPTS=5,
        provider_delay_s=1,
    )
    [slow] = await _queued(service, ["+15005550408"])
    rest = await _queued(service, ["+447700900511", "+447700900512"])

    async with service.pool.acquire() as conn:
        claimed = await repository.claim_due(conn, Channel.SMS, lease_s=60, limit=10)
        assert claimed[0]["delivery_id"] == (await service.delivery(slow))["delivery_id"]
        await service.engine._send_batch(conn, Channel.SMS, claimed)

    [attempt] = await service.attempts(slow)
    assert (attempt["outcome"], attempt["reason_code"]) == ("failed", "provider_timeout")
    for order_id in rest:
        row = await service.delivery(order_id)
        assert (row["status"], row["attempts"], row["channel_attempts"]) == ("queued", 0, 0)
        assert await service.attempts(order_id) == []

    # Due again a moment later (the provider's trouble may have passed), they go out normally.
    ids = [(await service.delivery(o))["delivery_id"] for o in rest]

    async def due() -> bool:
        return bool(
            await service.pool.fetchval(
                "SELECT bool_and(next_attempt_at <= now()) FROM deliveries WHERE delivery_id = ANY($1)", ids
            )
        )

    await wait_until(due, what="the returned deliveries to be due")
    async with service.pool.acquire() as conn:
        claimed = await repository.claim_due(conn, Channel.SMS, lease_s=60, limit=10)
        await service.engine._send_batch(conn, Channel.SMS, [c for c in claimed if c["delivery_id"] in ids])
    for order_id, phone in zip(rest, ["+447700900511", "+447700900512"], strict=True):
        await service.wait_status(order_id, "sent")
        assert [a["outcome"] for a in await service.attempts(order_id)] == ["succeeded"]
        assert _sent_to(service, phone) == 1

"""Sending a claim: many claims per statement under a lease, then each sent with no transaction open and
its outcome recorded before the next send starts; a cancellation does not wait for a send, and what a
send records never brings a cancelled delivery back."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from chassis.testing import wait_until
from contracts.orders import OrderState
from contracts.values import Channel
from services.delivery import repository
from services.delivery.channels import ChannelSender, Outgoing
from services.delivery.domain import ReasonCode, SendResult

from .conftest import request_for, settle, state_changed, voucher_for


async def _queued(service, phones: list[str], *, email: str | None = None) -> list[uuid.UUID]:
    orders = []
    for phone in phones:
        order_id = uuid.uuid4()
        await service.publish(request_for(order_id, channel=Channel.SMS, phone=phone, email=email))
        await service.publish(voucher_for(order_id))
        orders.append(order_id)
    for order_id in orders:
        await service.wait_status(order_id, "queued")
    return orders


def _sent_to(service, phone: str) -> int:
    return len([m for m in service.provider.messages() if m["to"] == phone])


class WatchingSender:
    """Wraps a channel's sender: runs `before` as each send begins (to look at the database then), and
    answers `answer` instead of sending when one is given."""

    def __init__(
        self,
        inner: ChannelSender,
        before: Callable[[Outgoing], Awaitable[None]],
        answer: SendResult | None = None,
    ) -> None:
        self.inner, self.before, self.answer = inner, before, answer

    async def send(self, message: Outgoing, *, idempotency_key: str) -> SendResult:
        await self.before(message)
        if self.answer is not None:
            return self.answer
        return await self.inner.send(message, idempotency_key=idempotency_key)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_batch_sends_each_claim_once_skips_one_cancelled_after_its_claim_and_publishes_each_success(
    delivery_service,
):
    service = await delivery_service(ORCHARD_DELIVERY_SMS_WORKERS=0, ORCHARD_DELIVERY_CLAIM_BATCH=10)
    phones = [f"+4477009003{n:02d}" for n in range(5)]
    orders = await _queued(service, phones)

    async with service.pool.acquire() as conn:
        claimed = await repository.claim_due(conn, Channel.SMS, lease_s=60, limit=10)
        assert sorted(c["delivery_id"] for c in claimed) == sorted(
            [(await service.delivery(o))["delivery_id"] for o in orders]
        )
        # Claimed (its attempt on record, not started) but cancelled before its turn.
        await service.publish(state_changed(orders[2], OrderState.CANCELLED))
        await service.wait_status(orders[2], "cancelled")
        await service.engine.send_claimed(conn, Channel.SMS, claimed)

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


async def test_each_outcome_is_on_record_before_the_next_send_starts_and_no_transaction_is_open_during_a_send(
    delivery_service,
):
    service = await delivery_service(ORCHARD_DELIVERY_SMS_WORKERS=0, ORCHARD_DELIVERY_CLAIM_BATCH=10)
    phones = [f"+4477009004{n:02d}" for n in range(4)]
    orders = await _queued(service, phones)
    ids = [(await service.delivery(o))["delivery_id"] for o in orders]
    seen: list[tuple[list[str], int]] = []

    async def look(message: Outgoing) -> None:
        # From another connection, as a crash would leave it: the earlier sends recorded, this one
        # alone in flight, the later ones only claimed; and no transaction of ours open or waiting.
        rows = await service.pool.fetch(
            "SELECT outcome FROM delivery_attempts WHERE delivery_id = ANY($1)",
            ids,
        )
        busy = await service.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
        )
        seen.append((sorted(r["outcome"] for r in rows), busy))

    service.engine.senders[Channel.SMS] = WatchingSender(service.engine.senders[Channel.SMS], look)
    async with service.pool.acquire() as conn:
        claimed = await repository.claim_due(conn, Channel.SMS, lease_s=60, limit=10)
        await service.engine.send_claimed(conn, Channel.SMS, claimed)

    assert [outcomes for outcomes, _ in seen] == [
        sorted(["succeeded"] * n + ["in_flight"] + ["pending"] * (3 - n)) for n in range(4)
    ]
    assert [busy for _, busy in seen] == [0, 0, 0, 0]
    for phone in phones:
        assert _sent_to(service, phone) == 1


async def test_a_worker_gone_mid_batch_leaves_one_unknown_outcome_and_its_unsent_claims_are_queued_again(
    delivery_service,
):
    service = await delivery_service(ORCHARD_DELIVERY_SMS_WORKERS=0, ORCHARD_DELIVERY_LEASE=0.5)
    orders = await _queued(service, ["+447700900611", "+447700900612", "+447700900613"])
    async with service.pool.acquire() as conn:
        claimed = await repository.claim_due(conn, Channel.SMS, lease_s=0.5, limit=10)
    first = next(c["order_id"] for c in claimed if c["started"])
    # The worker dies here, during its first send: nothing more of it happens.

    async def recovered() -> bool:
        return all([(await service.delivery(o))["status"] == "queued" for o in orders])

    await wait_until(recovered, what="the recovery job to queue the claims again")
    for order_id in orders:
        row = await service.delivery(order_id)
        attempts = await service.attempts(order_id)
        if order_id == first:
            assert [(a["outcome"], a["reason_code"]) for a in attempts] == [("unknown", "outcome_unknown")]
            assert (row["attempts"], row["last_reason_code"]) == (1, "outcome_unknown")
        else:  # claimed, never sent: no attempt spent, nothing to flag
            assert attempts == []
            assert (row["attempts"], row["channel_attempts"], row["last_reason_code"]) == (0, 0, None)


async def test_a_recording_that_fails_queues_the_claims_not_yet_started_again_at_once(
    delivery_service, monkeypatch
):
    service = await delivery_service(ORCHARD_DELIVERY_SMS_WORKERS=0)
    orders = await _queued(service, ["+447700900621", "+447700900622", "+447700900623"])
    real_record_success = repository.record_success

    async def deadlock_victim(*args: object, **kwargs: object) -> None:
        raise asyncpg.DeadlockDetectedError("deadlock detected")

    monkeypatch.setattr(repository, "record_success", deadlock_victim)
    async with service.pool.acquire() as conn:
        claimed = await repository.claim_due(conn, Channel.SMS, lease_s=60, limit=10)
        first = next(c["order_id"] for c in claimed if c["started"])
        with pytest.raises(asyncpg.DeadlockDetectedError):
            await service.engine.send_claimed(conn, Channel.SMS, claimed)
    monkeypatch.setattr(repository, "record_success", real_record_success)

    for order_id in orders:
        row = await service.delivery(order_id)
        attempts = [a["outcome"] for a in await service.attempts(order_id)]
        if order_id == first:  # sent, its outcome unrecorded: left to the lease and the recovery job
            assert (row["status"], attempts) == ("sending", ["in_flight"])
        else:  # never started: back in the queue now, no attempt spent
            assert (row["status"], row["attempts"], attempts) == ("queued", 0, [])


async def test_a_provider_timeout_stops_the_batch_and_the_rest_is_queued_again_without_an_attempt(
    delivery_service,
):
    service = await delivery_service(
        ORCHARD_DELIVERY_SMS_WORKERS=0,
        ORCHARD_DELIVERY_PROVIDER_TIMEOUT=0.3,
        ORCHARD_DELIVERY_MAX_ATTEMPTS=5,
        provider_delay_s=1,
    )
    [slow] = await _queued(service, ["+15005550408"])
    rest = await _queued(service, ["+447700900511", "+447700900512"])

    async with service.pool.acquire() as conn:
        claimed = await repository.claim_due(conn, Channel.SMS, lease_s=60, limit=10)
        assert claimed[0]["delivery_id"] == (await service.delivery(slow))["delivery_id"]
        await service.engine.send_claimed(conn, Channel.SMS, claimed)

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
        await service.engine.send_claimed(conn, Channel.SMS, [c for c in claimed if c["delivery_id"] in ids])
    for order_id, phone in zip(rest, ["+447700900511", "+447700900512"], strict=True):
        await service.wait_status(order_id, "sent")
        assert [a["outcome"] for a in await service.attempts(order_id)] == ["succeeded"]
        assert _sent_to(service, phone) == 1


async def _cancel_during_send(service, order_id: uuid.UUID, answer: SendResult | None) -> None:
    """Run the workers with a sender that holds each send until the order's cancellation is committed."""

    async def wait_for_cancellation(message: Outgoing) -> None:
        await service.publish(state_changed(order_id, OrderState.CANCELLED))
        await service.wait_status(order_id, "cancelled", timeout=10)
        await asyncio.sleep(0.2)

    real = service.engine.senders[Channel.SMS]
    service.engine.senders[Channel.SMS] = WatchingSender(real, wait_for_cancellation, answer)
    async with service.pool.acquire() as conn:
        claimed = await repository.claim_due(conn, Channel.SMS, lease_s=60, limit=1)
        await service.engine.send_claimed(conn, Channel.SMS, claimed)
    service.engine.senders[Channel.SMS] = real


async def test_a_send_that_succeeds_after_its_order_was_cancelled_is_recorded_sent_and_nothing_follows(
    delivery_service,
):
    service = await delivery_service(ORCHARD_DELIVERY_SMS_WORKERS=0)
    [order_id] = await _queued(service, ["+447700900711"])
    await _cancel_during_send(service, order_id, None)

    row = await service.delivery(order_id)
    assert (row["status"], row["order_state"], row["next_attempt_at"], row["lease_until"]) == (
        "sent",
        "cancelled",
        None,
        None,
    )
    assert row["code_ciphertext"] is None
    assert [a["outcome"] for a in await service.attempts(order_id)] == ["succeeded"]
    assert _sent_to(service, "+447700900711") == 1
    await settle(1.0)
    assert len(await service.attempts(order_id)) == 1


async def test_a_send_that_fails_after_its_order_was_cancelled_neither_retries_nor_falls_back(
    delivery_service,
):
    service = await delivery_service(
        ORCHARD_DELIVERY_SMS_WORKERS=0,
        ORCHARD_DELIVERY_EMAIL_WORKERS=2,
        ORCHARD_DELIVERY_FALLBACK_DEFAULT=True,
    )
    orders = []
    for phone, answer in [
        ("+447700900811", SendResult.failure(ReasonCode.PROVIDER_ERROR, "500")),
        ("+447700900812", SendResult.failure(ReasonCode.INVALID_NUMBER, "21211")),  # else: email fallback
    ]:
        [order_id] = await _queued(service, [phone], email="ann@example.com")
        await _cancel_during_send(service, order_id, answer)
        orders.append(order_id)
    await settle(1.5)  # email workers are running: a fallback would be sent now

    for order_id in orders:
        row = await service.delivery(order_id)
        assert (row["status"], row["channel"], row["next_attempt_at"], row["lease_until"]) == (
            "cancelled",
            "sms",
            None,
            None,
        )
        assert row["fallback_trail"] == "[]"
        assert [(a["outcome"], a["channel"]) for a in await service.attempts(order_id)] == [("failed", "sms")]
        [event] = await service.wait_events("delivery.failed", order_id, 1)
        assert event["data"]["final"] is True
    # No voucher fallback by e-mail (the member may be told of the cancellation: another delivery).
    vouchers = {str((await service.delivery(order_id))["delivery_id"]) for order_id in orders}
    assert not [m for m in service.smtp.messages() if any(v in str(m["Message-ID"]) for v in vouchers)]

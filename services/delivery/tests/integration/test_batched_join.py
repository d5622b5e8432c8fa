"""The join fed a batch at a time (the consumers' batch handlers) ends exactly as fed one event at a time:
the same deliveries, contacts and notifications; and a batch wakes each channel's workers once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from contracts.envelope import Envelope, EventData
from contracts.orders import OrderState
from contracts.registry import for_payload
from contracts.values import Channel
from deploy.testing import twin_service_pools
from services.delivery import repository
from services.delivery.app import MIGRATIONS
from services.delivery.codes import CodeVault
from services.delivery.handlers import DeliveryHandlers
from services.delivery.settings import DeliverySettings

from .conftest import request_for, state_changed, voucher_for


@pytest.fixture
async def twin_pools(service_db, pg_admin_dsn):
    """Two delivery databases: one fed event by event, the other batch by batch."""
    async with twin_service_pools(service_db, pg_admin_dsn, MIGRATIONS) as pools:
        yield pools


def env(data: EventData) -> Envelope[Any]:
    return Envelope.new(event_type=for_payload(data).name, producer="test", data=data)


def scenario() -> list[list[Envelope[Any]]]:
    """Batches as the three consumers would see them: one topic each, repeats and crossings included."""
    o = [uuid.uuid4() for _ in range(6)]
    s = OrderState
    return [
        # Vouchers before requests for o0 and o1; o1's repeated (a second event for the same order).
        [env(voucher_for(o[0], code="ORCH-0000-0001")), env(voucher_for(o[1])), env(voucher_for(o[1]))],
        # Requests: o0 and o1 complete the join (two channels), o2 waits; o0 asked again (ignored); the
        # member's contacts change across the batch (the last one given per field wins).
        [
            env(request_for(o[0], email="ann@example.com")),
            env(request_for(o[1], channel=Channel.SMS, phone="+447700900101", email=None)),
            env(request_for(o[2], email="ann@new.example.com", locale="fr")),
            env(request_for(o[0], email="other@example.com")),
            env(request_for(o[3], channel=Channel.SMS, phone="+447700900103", email=None)),
        ],
        # Order states: o2 goes on hold then is cancelled, o3 cancelled then (late) pending, o4 is
        # unknown here and cancelled (a placeholder row), o5 unknown and only pending (nothing).
        [
            env(state_changed(o[2], s.PENDING)),
            env(state_changed(o[3], s.CANCELLED, reason="eligibility")),
            env(state_changed(o[2], s.CANCELLED)),
            env(state_changed(o[4], s.CANCELLED)),
            env(state_changed(o[5], s.PENDING)),
            env(state_changed(o[3], s.PENDING)),
            env(state_changed(o[0], s.COMPLETED)),
        ],
        # The vouchers of cancelled orders are recorded without their codes; o5's request stays waiting.
        [env(voucher_for(o[2])), env(voucher_for(o[3])), env(voucher_for(o[5]))],
        [env(request_for(o[5], channel=Channel.SMS, phone="+447700900105")), env(request_for(o[4]))],
    ]


async def snapshot(pool: Any, vault: CodeVault) -> dict[str, list[tuple[Any, ...]]]:
    volatile = {"delivery_id", "created_at", "updated_at", "next_attempt_at", "code_ciphertext"}
    async with pool.acquire() as conn:
        deliveries = [
            (
                tuple(v for k, v in r.items() if k not in volatile),
                r["next_attempt_at"] is None,
                None
                if r["code_ciphertext"] is None
                else vault.open(bytes(r["code_ciphertext"])).get_secret_value(),
            )
            for r in await conn.fetch("SELECT * FROM deliveries ORDER BY order_id")
        ]
        contacts = await conn.fetch("SELECT member_id, name, email, phone, locale FROM member_contacts")
        notes = await conn.fetch("SELECT target, kind, campaign_id, line FROM notifications ORDER BY id")
    return {
        "deliveries": deliveries,
        "contacts": [tuple(r) for r in contacts],
        "notifications": [tuple(r) for r in notes],
    }


def _code(vault: CodeVault, sealed: bytes | None) -> str | None:
    """Sealing is randomised: compare the codes held, not their ciphertexts."""
    return None if sealed is None else vault.open(bytes(sealed)).get_secret_value()


def handlers_for(handlers: DeliveryHandlers) -> dict[str, Any]:
    """The join's subscriptions by topic (other subscriptions of the service read the same topics)."""
    join = ("delivery-requests", "delivery-vouchers", "delivery-orders")
    return {sub.topic: sub for sub in handlers.subscriptions() if sub.name in join}


async def test_a_batch_of_requests_vouchers_and_order_states_ends_as_the_events_one_by_one(twin_pools):
    one_by_one, batched = twin_pools
    settings = DeliverySettings(
        ORCHARD_DELIVERY_NOTIFY_SLACK_URL="http://slack.invalid/hook",
        ORCHARD_DELIVERY_NOTIFY_TEAMS_URL="http://teams.invalid/x",
    )
    subs = handlers_for(DeliveryHandlers(settings))
    for batch in scenario():
        sub = subs[batch[0].event_type]
        assert sub.handle_batch is not None
        for e in batch:
            async with one_by_one.acquire() as conn, conn.transaction():
                await sub.handle(conn, e)
        async with batched.acquire() as conn, conn.transaction():
            await sub.handle_batch(conn, batch)

    vault = CodeVault(settings.code_key)
    expected, got = await snapshot(one_by_one, vault), await snapshot(batched, vault)
    assert got == expected
    assert len(expected["deliveries"]) == 6
    assert len(expected["notifications"]) == 2 * 3  # three cancellations, to both targets
    assert sum(1 for d in expected["deliveries"] if d[2] is not None) == 3  # o0, o1 and o5 hold codes


async def test_a_batch_wakes_each_channels_workers_once(twin_pools):
    _, batched = twin_pools
    handlers = DeliveryHandlers(DeliverySettings())
    woken: list[str] = []
    orders = [uuid.uuid4() for _ in range(6)]
    async with batched.acquire() as listener:
        await listener.add_listener(repository.WAKE_CHANNEL, lambda *args: woken.append(args[-1]))
        async with batched.acquire() as conn, conn.transaction():
            await handlers.on_vouchers_issued(conn, [env(voucher_for(o)) for o in orders])
        async with batched.acquire() as conn, conn.transaction():
            await handlers.on_delivery_requests(
                conn,
                [
                    env(
                        request_for(o, channel=Channel.SMS if n % 2 else Channel.EMAIL, phone="+447700900111")
                    )
                    for n, o in enumerate(orders)
                ],
            )
        for _ in range(20):
            if len(woken) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    assert sorted(woken) == ["email", "sms"]
    queued = await batched.fetchval("SELECT count(*) FROM deliveries WHERE status = 'queued'")
    assert queued == 6

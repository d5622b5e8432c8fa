"""Helpers for tests that talk to the real broker and database (used by every service's tests)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from aiokafka import AIOKafkaProducer

from contracts.delivery import DeliveryFailed, DeliverySucceeded
from contracts.envelope import Envelope, EventData
from contracts.orders import OrderSource, OrderState, OrderStateChanged
from contracts.registry import for_payload
from contracts.values import Channel
from contracts.vouchers import CodeStatus, VoucherIssued, VoucherStatusChanged

from .consumer import EventConsumer
from .db import quote_ident
from .kafka_security import client_options
from .sealed_codes import dev_sealer
from .topic_reader import open_topic

if TYPE_CHECKING:
    from .service import ServiceRuntime


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> None:
    """Poll an async condition; fail with a message naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        await asyncio.sleep(interval)


class FakeClock:
    """A `chassis.clock.Clock` that stands still until the test moves it."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        """Move on by `timedelta(**delta)`; returns the new time."""
        self._now += timedelta(**delta)
        return self._now

    def set(self, moment: datetime) -> None:
        self._now = moment


async def read_topic(bootstrap: str, topic: str, *, timeout: float = 10.0) -> list[Any]:
    """Every record currently in a topic, partition by partition, without joining a group."""
    async with open_topic(bootstrap, topic) as snapshot:
        return await snapshot.read(timeout=timeout)


async def produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]], headers: Any = None
) -> None:
    """Send raw (key, value) pairs, as an upstream system or an attacker would."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", **client_options()
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v, headers=headers) for k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (-1 where nothing was committed)."""
    async with open_topic(bootstrap, topic, group_id=group_id) as snapshot:
        result = {}
        for tp in snapshot.partitions:
            offset = await snapshot.consumer.committed(tp)
            result[tp.partition] = -1 if offset is None else offset
        return result


def kafka_answers(runtime: ServiceRuntime) -> Callable[[], Awaitable[bool]]:
    """A `wait_until` condition: the runtime's broker answers (its consumers can join their groups)."""

    async def answers() -> bool:
        try:
            await runtime.check_kafka()
        except Exception:
            return False
        return True

    return answers


def private_group_consumer(prefix: str) -> type[EventConsumer]:
    """A consumer class whose groups are `<prefix>.<service>.<name>`: a test's replicas share them, and
    offsets other tests committed on the same topics never hide its events."""

    class PrivateGroupConsumer(EventConsumer):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs, group_prefix=prefix)

    return PrivateGroupConsumer


async def audit_trail(http: Any, headers: dict[str, str], **filters: Any) -> list[dict[str, Any]]:
    """The entries of a service's `GET /v1/audit` matching `filters` (first page of 1000)."""
    response = await http.get("/v1/audit", params={"limit": 1000, **filters}, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def audit_verification(http: Any, headers: dict[str, str]) -> dict[str, Any]:
    """A service's `GET /v1/audit/verify` answer."""
    response = await http.get("/v1/audit/verify", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def tamper_audit_log(admin_dsn: str, schema: str, *statements: str) -> None:
    """Run `statements` on a schema's audit log as a superuser would, its append-only trigger set aside."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL search_path = {quote_ident(schema)}")
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    finally:
        await conn.close()


def voucher_campaign(
    campaign_id: str, name: str, *, run: str, budget: str, face_value: str = "25.00"
) -> dict[str, Any]:
    """The body creating a voucher campaign for a whole-system run (`run`: e2e, bench): EUR codes sent
    by e-mail, kept a year after issue."""
    return {
        "campaign_id": campaign_id,
        "name": f"{run} {name}",
        "brand": f"Orchard {run}",
        "face_value": face_value,
        "currency": "EUR",
        "per_record_limit": "100.00",
        "budget": budget,
        "default_channel": "email",
        "expiry_policy": {"kind": "days_after_issue", "days": 365},
    }


# Upstream events as the read models (support's portal, the wallet's dashboard, benches) receive them:
# one valid payload of each kind, named after its order, with any field overridable.


def order_state_changed(
    order_id: uuid.UUID, state: OrderState, previous: OrderState | None = None, **fields: Any
) -> OrderStateChanged:
    values: dict[str, Any] = {
        "booking_id": f"BK-{order_id.hex[:10].upper()}",
        "member_id": f"member-{order_id.hex[:6]}",
        "campaign_id": "camp-1",
        "source": OrderSource.IPA,
        **fields,
    }
    return OrderStateChanged(order_id=order_id, state=state, previous_state=previous, **values)


def voucher_issued(
    order_id: uuid.UUID, code_id: uuid.UUID | None = None, *, mask: str = "2W8P", **fields: Any
) -> VoucherIssued:
    """`code_id` defaults to one drawn from the order id, the same for every call."""
    code_id = code_id or uuid.uuid5(uuid.NAMESPACE_OID, str(order_id))
    values: dict[str, Any] = {"campaign_id": "camp-1", "face_value": "10.00", "currency": "EUR", **fields}
    return VoucherIssued(
        order_id=order_id,
        code_id=code_id,
        sealed_code=dev_sealer().seal(f"QX7M-4T9K-{mask}", code_id),
        masked_code=f"****-****-{mask}",
        **values,
    )


def voucher_status_changed(
    order_id: uuid.UUID | None, code_id: uuid.UUID, status: CodeStatus, **fields: Any
) -> VoucherStatusChanged:
    values: dict[str, Any] = {"campaign_id": "camp-1", "remaining_value": "10.00", **fields}
    return VoucherStatusChanged(order_id=order_id, code_id=code_id, status=status, **values)


def delivery_outcome(
    order_id: uuid.UUID, attempt: int = 1, *, ok: bool, final: bool = True, **fields: Any
) -> DeliverySucceeded | DeliveryFailed:
    """A success, or a failure (`final`: no retry follows) of an order's delivery by SMS."""
    values: dict[str, Any] = {
        "delivery_id": uuid.uuid5(uuid.NAMESPACE_URL, str(order_id)),
        "channel": Channel.SMS,
        **fields,
    }
    if ok:
        return DeliverySucceeded(order_id=order_id, attempt=attempt, **values)
    values.setdefault("reason_code", "invalid_number" if final else "provider_timeout")
    return DeliveryFailed(order_id=order_id, attempt=attempt, retryable=not final, final=final, **values)


def envelope_at(data: EventData, occurred_at: datetime, producer: str = "test") -> Envelope[Any]:
    """`data` in an envelope of its registry topic, as it happened at `occurred_at`."""
    return Envelope.new(
        event_type=for_payload(data).name, producer=producer, data=data, occurred_at=occurred_at
    )


async def table_snapshot(pool: asyncpg.Pool, queries: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Each query's rows as tuples, by name: two databases fed the same events compare equal."""
    async with pool.acquire() as conn:
        return {name: [tuple(row) for row in await conn.fetch(query)] for name, query in queries.items()}

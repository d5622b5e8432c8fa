"""Helpers for tests that talk to the real broker and database (used by every service's tests)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
from aiokafka import AIOKafkaProducer

from .consumer import EventConsumer
from .db import quote_ident
from .kafka_security import client_options
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

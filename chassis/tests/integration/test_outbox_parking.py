"""Events the broker will never take are parked; the rest of the stream goes on (real Postgres, Kafka)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from chassis.outbox import OUTBOX_PARKED, OutboxRelay, OutgoingEvent, add_to_outbox
from chassis.testing import read_topic, wait_until
from contracts.envelope import Envelope, EventData
from deploy.infra.net import free_port
from deploy.testing import ServiceDb

NewTopicFactory = Callable[..., Awaitable[str]]


class Sized(EventData):
    key: str
    seq: int
    blob: str = ""


def event(topic: str, key: str, seq: int, size: int = 0) -> OutgoingEvent:
    return OutgoingEvent(
        key=key,
        topic=topic,
        envelope=Envelope.new(
            event_type=topic, producer="test", data=Sized(key=key, seq=seq, blob="x" * size)
        ),
    )


def relay_for(service_db: ServiceDb, bootstrap: str, **kw: Any) -> OutboxRelay:
    kw.setdefault("poll_interval_s", 0.2)
    kw.setdefault("max_backoff_s", 0.5)
    return OutboxRelay(dsn=service_db.dsn, schema=service_db.schema, bootstrap_servers=bootstrap, **kw)


async def write(pool: asyncpg.Pool, events: list[OutgoingEvent]) -> list[int]:
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, events)
    rows = await pool.fetch(
        "SELECT id FROM outbox WHERE event_id = ANY($1::uuid[]) ORDER BY id",
        [e.envelope.event_id for e in events],
    )
    return [r["id"] for r in rows]


async def small_message_topic(bootstrap: str, max_message_bytes: int) -> str:
    """A topic whose broker refuses records larger than max_message_bytes."""
    name = f"small.{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, 1, 1, topic_configs={"max.message.bytes": str(max_message_bytes)})]
        )
    finally:
        await admin.close()
    return name


async def allow_larger_messages(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": "1048588"})]
        )
    finally:
        await admin.close()


def seqs_by_key(records: list[Any]) -> dict[str, list[int]]:
    """Each key's events as a consumer handles them: the read includes aborted transactions' records,
    whose repeats the inbox drops by event_id."""
    seen: dict[str, list[int]] = {}
    event_ids: set[str] = set()
    for record in records:
        envelope = json.loads(record.value)
        if envelope["event_id"] in event_ids:
            continue
        event_ids.add(envelope["event_id"])
        data = envelope["data"]
        seen.setdefault(data["key"], []).append(data["seq"])
    return seen


async def _published(pool: asyncpg.Pool, ids: list[int]) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE id = ANY($1::bigint[]) AND published_at IS NOT NULL", ids
    )
    return bool(count == len(ids))


async def _parked(pool: asyncpg.Pool, row_id: int) -> bool:
    return bool(await pool.fetchval("SELECT parked_at IS NOT NULL FROM outbox WHERE id = $1", row_id))


async def test_an_event_too_large_for_the_broker_is_parked_and_the_events_after_it_are_published(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = await new_topic("parking")
    # Larger than the producer's max_request_size (1 MiB): refused before it is sent.
    ids = await write(
        pool,
        [
            event(topic, "a", 1),
            event(topic, "a", 2, size=1_100_000),
            event(topic, "a", 3),
            event(topic, "b", 1),
        ],
    )
    big = ids[1]
    relay = relay_for(service_db, kafka_bootstrap, max_publish_attempts=3)
    await relay.start()
    try:
        await wait_until(
            lambda: _published(pool, [ids[0], ids[2], ids[3]]), what="the others published", timeout=60
        )
        await wait_until(lambda: _gauge_is(relay, service_db.schema, 1), what="parked gauge", timeout=10)
    finally:
        await relay.stop()
    row = await pool.fetchrow(
        "SELECT publish_attempts, last_error, parked_at, published_at FROM outbox WHERE id = $1", big
    )
    assert row is not None
    assert row["publish_attempts"] == 3
    assert row["parked_at"] is not None
    assert row["published_at"] is None
    assert "MessageSizeTooLarge" in row["last_error"]
    assert seqs_by_key(await read_topic(kafka_bootstrap, topic)) == {"a": [1, 3], "b": [1]}


async def test_an_event_the_broker_refuses_as_too_large_is_parked_and_the_events_after_it_are_published(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str
) -> None:
    topic = await small_message_topic(kafka_bootstrap, 2_000)
    ids = await write(pool, [event(topic, "a", 1), event(topic, "a", 2, size=5_000), event(topic, "a", 3)])
    relay = relay_for(service_db, kafka_bootstrap, max_publish_attempts=2)
    await relay.start()
    try:
        await wait_until(lambda: _published(pool, [ids[0], ids[2]]), what="the others published", timeout=20)
    finally:
        await relay.stop()
    assert await _parked(pool, ids[1])
    assert seqs_by_key(await read_topic(kafka_bootstrap, topic)) == {"a": [1, 3]}


async def test_a_broker_outage_parks_nothing(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = await new_topic("outage")
    ids = await write(pool, [event(topic, "a", 1), event(topic, "a", 2)])
    # Nothing listens on this port: every round fails as a broker outage does.
    down = relay_for(service_db, f"127.0.0.1:{free_port()}", max_publish_attempts=1)
    await down.start()
    await asyncio.sleep(4)
    await down.stop(flush_timeout_s=2)
    rows = await pool.fetch("SELECT publish_attempts, parked_at, published_at FROM outbox ORDER BY id")
    assert [(r["publish_attempts"], r["parked_at"], r["published_at"]) for r in rows] == [(0, None, None)] * 2
    relay = relay_for(service_db, kafka_bootstrap, max_publish_attempts=1)
    await relay.start()
    try:
        await wait_until(lambda: _published(pool, ids), what="published once the broker is back", timeout=30)
    finally:
        await relay.stop()


async def test_a_parked_event_retried_by_the_operator_is_published(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str
) -> None:
    topic = await small_message_topic(kafka_bootstrap, 2_000)
    ids = await write(pool, [event(topic, "a", 1, size=5_000), event(topic, "a", 2)])
    relay = relay_for(service_db, kafka_bootstrap, max_publish_attempts=1)
    await relay.start()
    try:
        await wait_until(lambda: _published(pool, [ids[1]]), what="the later event published", timeout=20)
        assert await _parked(pool, ids[0])

        listed = orchard("outbox", "parked", "--service", service_db.schema, "--database-url", service_db.dsn)
        assert listed.returncode == 0, listed.stderr
        assert "1 parked event(s)." in listed.stdout
        assert topic in listed.stdout
        assert "xxxx" not in listed.stdout  # never the payload

        await allow_larger_messages(kafka_bootstrap, topic)
        retried = orchard(
            "outbox",
            "retry",
            "--service",
            service_db.schema,
            "--database-url",
            service_db.dsn,
            "--id",
            str(ids[0]),
        )
        assert retried.returncode == 0, retried.stderr
        assert f"Un-parked 1 event(s): {ids[0]}." in retried.stdout
        await wait_until(lambda: _published(pool, ids), what="the retried event published", timeout=30)
    finally:
        await relay.stop()
    # The retried event went out after the later one of its key: the documented trade-off.
    assert seqs_by_key(await read_topic(kafka_bootstrap, topic)) == {"a": [2, 1]}


def orchard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


async def _gauge_is(relay: OutboxRelay, schema: str, value: int) -> bool:
    return OUTBOX_PARKED.labels(schema)._value.get() == value

"""The outbox relay against the real Postgres and Kafka."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from chassis import wakeups
from chassis.outbox import OutboxRelay, OutgoingEvent, add_to_outbox
from chassis.testing import read_topic, wait_until
from contracts.envelope import Envelope, EventData
from deploy.testing import ServiceDb

NewTopic = Callable[..., Awaitable[str]]


class Counted(EventData):
    key: str
    seq: int


def event(topic: str, key: str, seq: int) -> OutgoingEvent:
    return OutgoingEvent(
        key=key,
        topic=topic,
        envelope=Envelope.new(event_type=topic, producer="test", data=Counted(key=key, seq=seq)),
    )


def relay_for(service_db: ServiceDb, kafka_bootstrap: str, **kw: Any) -> OutboxRelay:
    return OutboxRelay(dsn=service_db.dsn, schema=service_db.schema, bootstrap_servers=kafka_bootstrap, **kw)


async def test_only_committed_events_are_published(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("outbox")
    async with pool.acquire() as conn:
        async with conn.transaction():
            await add_to_outbox(conn, [event(topic, "a", 1), event(topic, "b", 1)])
        rolled_back = conn.transaction()
        await rolled_back.start()
        await add_to_outbox(conn, [event(topic, "c", 1)])
        await rolled_back.rollback()
    relay = relay_for(service_db, kafka_bootstrap)
    await relay.start()
    try:
        await wait_until(lambda: _published_count(pool, 2), what="two events marked published")
    finally:
        await relay.stop()
    records = await read_topic(kafka_bootstrap, topic)
    assert sorted(json.loads(r.value)["data"]["key"] for r in records) == ["a", "b"]
    headers = dict(records[0].headers)
    assert headers["event_type"] == topic.encode()
    assert "correlation_id" in headers


async def test_a_published_sensitive_event_keeps_its_row_but_not_its_payload(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    sensitive, plain = await new_topic("sensitive"), await new_topic("plain")
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, [event(sensitive, "secret-key", 1), event(plain, "plain-key", 1)])
    relay = relay_for(service_db, kafka_bootstrap, sensitive_topics={sensitive})
    await relay.start()
    try:
        await wait_until(lambda: _published_count(pool, 2), what="both events marked published")
    finally:
        await relay.stop()
    rows = {
        r["topic"]: r for r in await pool.fetch("SELECT topic, message_key, event_id, payload FROM outbox")
    }
    assert bytes(rows[sensitive]["payload"]) == b""
    assert rows[sensitive]["message_key"] == "secret-key"
    assert json.loads(rows[plain]["payload"])["data"]["key"] == "plain-key"
    # What was published is whole: only the row left behind was emptied.
    [record] = await read_topic(kafka_bootstrap, sensitive)
    assert json.loads(record.value)["event_id"] == str(rows[sensitive]["event_id"])


async def test_outbox_write_outside_a_transaction_is_refused(pool: asyncpg.Pool, new_topic: NewTopic) -> None:
    topic = await new_topic("outbox")
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="transaction"):
            await add_to_outbox(conn, [event(topic, "a", 1)])


async def test_events_of_one_key_arrive_in_the_order_they_were_written(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("ordered", partitions=3)
    relay = relay_for(service_db, kafka_bootstrap, batch_size=37)
    await relay.start()
    try:
        for seq in range(1, 61):
            async with pool.acquire() as conn, conn.transaction():
                await add_to_outbox(conn, [event(topic, f"k{k}", seq) for k in range(5)])
        await wait_until(lambda: _published_count(pool, 300), what="300 events published", timeout=60)
    finally:
        await relay.stop()
    seen: dict[str, list[int]] = defaultdict(list)
    for record in await read_topic(kafka_bootstrap, topic):
        data = json.loads(record.value)["data"]
        seen[data["key"]].append(data["seq"])
    assert {k: v for k, v in seen.items()} == {f"k{k}": list(range(1, 61)) for k in range(5)}


async def test_a_second_relay_stands_by_until_the_first_stops(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("leader")
    first = relay_for(service_db, kafka_bootstrap, poll_interval_s=0.2)
    second = relay_for(service_db, kafka_bootstrap, poll_interval_s=0.2)
    await first.start()
    await wait_until(lambda: _is(first), what="first relay leads")
    await second.start()
    await asyncio.sleep(1.0)
    assert first.is_leader
    assert not second.is_leader
    await first.stop()
    # A relay that stops releases its lease: the standby need not wait for it to expire.
    lease = await pool.fetchrow("SELECT holder, expires_at = '-infinity' AS released FROM outbox_relay_lease")
    assert lease is not None
    assert lease["released"] or lease["holder"] == second.holder
    await wait_until(lambda: _is(second), what="second relay takes over")
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, [event(topic, "x", 1)])
    await wait_until(lambda: _published_count(pool, 1), what="event published by the new leader")
    await second.stop()


async def test_the_relay_wakes_on_notify_without_waiting_for_its_poll(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("notify")
    relay = relay_for(service_db, kafka_bootstrap, poll_interval_s=30.0)
    await relay.start()
    try:
        await wait_until(lambda: _is(relay), what="relay leads")
        await asyncio.sleep(0.5)
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, [event(topic, "n", 1)])
        await wait_until(lambda: _published_count(pool, 1), timeout=10, what="published well before the poll")
    finally:
        await relay.stop()


async def test_a_leader_in_another_process_is_woken_by_a_notify_after_the_commit(
    pool: asyncpg.Pool,
    service_db: ServiceDb,
    kafka_bootstrap: str,
    new_topic: NewTopic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = await new_topic("notify-elsewhere")
    relay = relay_for(service_db, kafka_bootstrap, poll_interval_s=30.0)
    await relay.start()
    # As the writers of another process see it: no relay of theirs leads.
    monkeypatch.setattr(wakeups, "_LOCAL", {})
    try:
        await wait_until(lambda: _is(relay), what="relay leads")
        await asyncio.sleep(0.5)
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, [event(topic, "elsewhere", 1)])
        await wait_until(lambda: _published_count(pool, 1), timeout=10, what="published well before the poll")
    finally:
        await relay.stop()


async def test_events_written_on_a_connection_of_no_pool_of_ours_still_wake_the_relay(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str, new_topic: NewTopic
) -> None:
    topic = await new_topic("notify-plain")
    relay = relay_for(service_db, kafka_bootstrap, poll_interval_s=30.0)
    await relay.start()
    plain = await asyncpg.connect(service_db.dsn, server_settings={"search_path": service_db.schema})
    try:
        await wait_until(lambda: _is(relay), what="relay leads")
        await asyncio.sleep(0.5)
        async with plain.transaction():
            await add_to_outbox(plain, [event(topic, "plain", 1)])
        await wait_until(lambda: _published_count(pool, 1), timeout=10, what="published well before the poll")
    finally:
        await plain.close()
        await relay.stop()


async def _published_count(pool: asyncpg.Pool, expected: int) -> bool:
    count = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
    return bool(count >= expected)


async def _is(relay: OutboxRelay) -> bool:
    return relay.is_leader

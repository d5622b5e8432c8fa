"""Raw baselines: what aiokafka and asyncpg do on this machine with nothing of ours in between."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from .infra import Infra, scratch_pool
from .measure import PARTITIONS, STALL_TIMEOUT_S, Measurement

# The relay's producer settings (chassis/outbox.py): the baseline differs from it only by our layer.
RELAY_PRODUCER = {"enable_idempotence": True, "acks": "all", "linger_ms": 5, "max_batch_size": 256 * 1024}


async def kafka_round_trip(infra: Infra, name: str, messages: list[tuple[bytes, bytes]]) -> Measurement:
    """(a) Produce every message and consume it back; the clock runs from first send to last receipt."""
    producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, **RELAY_PRODUCER)
    # Assigned, not subscribed: no group join on the clock, like a consumer that is already running.
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.bootstrap, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    try:
        consumer.assign([TopicPartition(name, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()

        async def drain() -> float:
            received = 0
            while received < len(messages):
                batches = await consumer.getmany(timeout_ms=100)
                received += sum(len(records) for records in batches.values())
            return time.monotonic()

        draining = asyncio.create_task(drain())
        started = time.monotonic()
        acks = [await producer.send(name, key=key, value=value) for key, value in messages]
        await asyncio.gather(*acks)
        finished = await asyncio.wait_for(draining, timeout=STALL_TIMEOUT_S + len(messages) / 20)
        return Measurement("a", "kafka produce+consume (raw aiokafka)", len(messages), finished - started)
    finally:
        await producer.stop()
        await consumer.stop()


async def postgres_inserts(infra: Infra, rows: list[tuple[uuid.UUID, bytes]], *, workers: int) -> Measurement:
    """(b) One INSERT per transaction, the shape of a handler's commit, by `workers` concurrent tasks."""
    async with scratch_pool(infra.admin_dsn, size=workers) as (_, pool):
        await pool.execute(
            "CREATE TABLE raw_rows (id bigserial PRIMARY KEY, event_id uuid NOT NULL UNIQUE,"
            " payload bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )

        async def work(share: list[tuple[uuid.UUID, bytes]]) -> None:
            for event_id, payload in share:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(
                        "INSERT INTO raw_rows (event_id, payload) VALUES ($1, $2)", event_id, payload
                    )

        started = time.monotonic()
        await asyncio.gather(*(work(rows[w::workers]) for w in range(workers)))
        seconds = time.monotonic() - started
    where = "1 connection" if workers == 1 else f"pool of {workers} workers"
    return Measurement(f"b{workers}", f"postgres 1-row INSERT txns, {where}", len(rows), seconds)

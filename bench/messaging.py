"""Our messaging layer, measured as services use it: the outbox with its relay, and the inbox consumer."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
from faststream.kafka import KafkaBroker

from chassis.consumer import EventConsumer, Subscription
from chassis.db import Connection, apply_migrations
from chassis.outbox import OutboxRelay, OutgoingEvent, add_to_outbox
from chassis.settings import Settings
from chassis.testing import produce
from contracts.envelope import Envelope
from contracts.vouchers import VoucherIssued

from .infra import Infra, scratch_pool
from .measure import EVENT_TYPE, Measurement, message_key, voucher_issued_events, wait_for_count


async def outbox(
    infra: Infra, name: str, envelopes: list[Envelope[VoucherIssued]], *, per_txn: int, writers: int = 8
) -> Measurement:
    """(c) `writers` tasks commit the events `per_txn` at a time while the relay publishes them; the
    clock runs from the first write until every row is marked published (after the broker's ack)."""
    events = [OutgoingEvent(key=message_key(e), envelope=e, topic=name) for e in envelopes]
    settings = Settings()  # the relay tuning a service would run with
    async with scratch_pool(infra.admin_dsn, size=writers + 1) as (db, pool):
        await apply_migrations(pool)
        relay = OutboxRelay(
            dsn=db.dsn,
            schema=db.schema,
            bootstrap_servers=infra.bootstrap,
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
        )
        await relay.start()
        try:
            # One event through first, so leader election and producer start-up stay off the clock.
            warm_up = OutgoingEvent(key="warm-up", envelope=voucher_issued_events(1)[0], topic=name)
            await _write(pool, [[warm_up]])
            published = "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
            await wait_for_count(lambda: pool.fetchval(published), 1, what="relay warm-up")

            chunks = [events[i : i + per_txn] for i in range(0, len(events), per_txn)]
            started = time.monotonic()
            await asyncio.gather(*(_write(pool, chunks[w::writers]) for w in range(writers)))
            finished = await wait_for_count(lambda: pool.fetchval(published), len(events) + 1, what="outbox")
        finally:
            await relay.stop()
        # published_at is the relay's claim time (its transaction's now()), so lag excludes the ack wait.
        lag = await pool.fetchrow(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY published_at - created_at) AS p50,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY published_at - created_at) AS p99"
            " FROM outbox WHERE event_id <> $1",
            warm_up.envelope.event_id,
        )
    assert lag is not None
    return Measurement(
        f"c{per_txn}",
        f"outbox {per_txn} event(s)/txn, {writers} writers + relay",
        len(events),
        finished - started,
        {"lag_p50_ms": lag["p50"].total_seconds() * 1000, "lag_p99_ms": lag["p99"].total_seconds() * 1000},
    )


async def _write(pool: asyncpg.Pool, chunks: list[list[OutgoingEvent]]) -> None:
    for chunk in chunks:
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, chunk)


async def inbox(infra: Infra, name: str, envelopes: list[Envelope[VoucherIssued]]) -> Measurement:
    """(d) The events wait on a topic; the clock runs from starting the consumer until every effect row
    is committed, so it includes joining the consumer group (reported as time to first effect)."""
    await produce(infra.bootstrap, name, [(message_key(e).encode(), e.to_bytes()) for e in envelopes])
    async with scratch_pool(infra.admin_dsn, size=2) as (_, pool):
        await apply_migrations(pool)
        await pool.execute("CREATE TABLE effects (event_id uuid PRIMARY KEY, order_id uuid NOT NULL)")

        async def record_effect(conn: Connection, envelope: Envelope[Any]) -> None:
            await conn.execute(
                "INSERT INTO effects (event_id, order_id) VALUES ($1, $2)",
                envelope.event_id,
                envelope.data.order_id,
            )

        broker = KafkaBroker(infra.bootstrap, logger=None)
        service = f"bench{uuid.uuid4().hex[:8]}"  # a fresh consumer group: start from the first event
        consumer = EventConsumer(broker=broker, pool=pool, service=service, bootstrap_servers=infra.bootstrap)
        consumer.subscribe(
            Subscription(
                name="effects", topic=name, payload=VoucherIssued, handle=record_effect, event_type=EVENT_TYPE
            )
        )
        effects = "SELECT count(*) FROM effects"
        started = time.monotonic()
        await broker.start()
        try:
            first = await wait_for_count(lambda: pool.fetchval(effects), 1, what="first effect")
            finished = await wait_for_count(lambda: pool.fetchval(effects), len(envelopes), what="effects")
        finally:
            await broker.stop()
            await consumer.close()
    return Measurement(
        "d",
        "inbox consumer, inbox row + 1 effect row/event",
        len(envelopes),
        finished - started,
        {"first_effect_ms": (first - started) * 1000},
    )

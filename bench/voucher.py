"""`python -m bench.voucher [--orders N] [--codes N]`: the voucher service's issuance rate under a burst
of pending orders and the time to generate a million codes, next to raw Kafka and Postgres baselines
measured in the same run (see bench/__main__.py for how the baselines are taken).

- (a)  raw aiokafka produce + consume of the same number of order events;
- (b8) raw asyncpg one-row INSERT transactions from 8 workers;
- (id) the issuance work alone, order by order: `issuance.issue` per order, 500 per transaction;
- (ib) the issuance work alone, set-based: `batch_issuance.issue_many` on 500 orders per transaction,
       as the consumer's batch handler does (no Kafka in either);
- (i)  issuance: the real voucher runtime (consumer with inbox, issuance in Postgres, outbox relay)
       fed a burst of `order.state_changed` (pending, awaiting_voucher); clock from the first produce
       to the last `voucher.issued` row published by the relay;
- (cp) raw COPY of as many rows of the codes table's shape into a bare table (no index, no crypto);
- (g)  generation of the codes through the service's own code (random draw, HMAC, AES-GCM, COPY into
       staging, INSERT … ON CONFLICT into the indexed pool).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from decimal import Decimal

from bench import baselines
from bench.infra import Infra, open_infra, scratch_pool
from bench.measure import Measurement, quiet_logs, wait_for_count
from chassis.db import apply_migrations
from chassis.service import ServiceRuntime
from chassis.testing import produce
from contracts.envelope import Envelope
from contracts.orders import FulfilmentStatus, OrderSource, OrderState, OrderStateChanged
from contracts.registry import TOPICS
from contracts.topics import Topics
from contracts.values import Channel, RewardType
from contracts.vouchers import ExpiryKind, ExpiryPolicy
from deploy.infra.topics import ensure_topics
from services.voucher import batch_issuance, campaigns, codes, issuance
from services.voucher.service import build_spec, build_vault
from services.voucher.settings import VoucherSettings


def _campaign_fields(campaign_id: str) -> dict[str, object]:
    return {
        "campaign_id": campaign_id,
        "name": "Bench",
        "reward_type": RewardType.VOUCHER,
        "brand": "Bench",
        "face_value": Decimal(25),
        "currency": "EUR",
        "expiry_policy": ExpiryPolicy(kind=ExpiryKind.DAYS_AFTER_ISSUE, days=365),
        "budget": None,
        "default_channel": Channel.EMAIL,
        "per_record_limit": None,
        "partner_ids": (),
        "low_stock_threshold": 0,
        "allow_partial": True,
    }


def order_events(campaign_id: str, count: int) -> list[Envelope[OrderStateChanged]]:
    events = []
    for _ in range(count):
        order_id = uuid.uuid4()
        events.append(
            Envelope.new(
                event_type=Topics.ORDER_STATE_CHANGED,
                producer="order",
                data=OrderStateChanged(
                    order_id=order_id,
                    booking_id=f"BK-{order_id.hex[:10].upper()}",
                    member_id=f"m-{order_id.hex[:8]}",
                    campaign_id=campaign_id,
                    source=OrderSource.IPA,
                    state=OrderState.PENDING,
                    fulfilment_status=FulfilmentStatus.AWAITING_VOUCHER,
                ),
            )
        )
    return events


async def generation(infra: Infra, count: int) -> Measurement:
    vault = build_vault(VoucherSettings())
    async with scratch_pool(infra.admin_dsn, size=1) as (_, pool):
        await apply_migrations(pool, service_dir=build_spec(VoucherSettings()).migrations_dir)
        async with pool.acquire() as conn, conn.transaction():
            await campaigns.create(conn, _campaign_fields("gen"), actor="bench")
        started = time.monotonic()
        async with pool.acquire() as conn, conn.transaction():
            await codes.generate(
                conn, vault, "gen", count=count, length=12, prefix="", test=False, actor="bench"
            )
        seconds = time.monotonic() - started
        stored = await pool.fetchval("SELECT count(*) FROM codes")
    assert stored == count
    return Measurement("g", "generate codes (draw+HMAC+AES-GCM+COPY+unique insert)", count, seconds)


async def raw_copy(infra: Infra, count: int) -> Measurement:
    async with scratch_pool(infra.admin_dsn, size=1) as (_, pool):
        await pool.execute(
            "CREATE TABLE raw_codes (id uuid DEFAULT gen_random_uuid(), h bytea, s bytea, k text, l text,"
            " v numeric(18,4))"
        )
        records = [(os.urandom(32), os.urandom(40), "dev1", "ABCD", 25) for _ in range(count)]
        started = time.monotonic()
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table("raw_codes", records=records, columns=("h", "s", "k", "l", "v"))
        seconds = time.monotonic() - started
    return Measurement("cp", "postgres COPY of as many bare rows (raw asyncpg)", count, seconds)


async def issuance_burst(infra: Infra, orders: int) -> Measurement:
    await ensure_topics(infra.bootstrap, TOPICS)  # voucher.issued and the rest, as `orchard up` makes them
    topic = await infra.new_topic(6)
    warm_up, *events = order_events("burst", orders + 1)
    async with scratch_pool(infra.admin_dsn, size=1) as (db, pool):
        settings = VoucherSettings(
            ORCHARD_SERVICE=f"bench{uuid.uuid4().hex[:6]}",
            **db.service_env(infra.bootstrap),
        )
        runtime = ServiceRuntime(settings, build_spec(settings, order_topic=topic))
        await runtime.start()
        try:
            vault = build_vault(settings)
            async with pool.acquire() as conn, conn.transaction():
                await campaigns.create(conn, _campaign_fields("burst"), actor="bench")
                await codes.generate(
                    conn, vault, "burst", count=orders + 1, length=12, prefix="", test=False, actor="bench"
                )
            # One order through first: group join, partition assignment and the relay's start-up stay
            # off the clock, as for a service already running when the burst arrives.
            first = [(str(warm_up.data.order_id).encode(), warm_up.to_bytes())]
            await produce(infra.bootstrap, topic, first)
            await wait_for_count(lambda: pool.fetchval("SELECT count(*) FROM issuances"), 1, what="warm-up")
            started = time.monotonic()
            burst = [(str(e.data.order_id).encode(), e.to_bytes()) for e in events]
            await produce(infra.bootstrap, topic, burst)
            issued_at = await wait_for_count(
                lambda: pool.fetchval("SELECT count(*) FROM issuances"), orders + 1, what="issuances"
            )
            published = await wait_for_count(
                lambda: pool.fetchval(
                    "SELECT count(*) FROM outbox WHERE topic = 'voucher.issued' AND published_at IS NOT NULL"
                ),
                orders + 1,
                what="voucher.issued published",
            )
            # One inbox timestamp per consumer transaction: how the burst was batched.
            batches = await pool.fetchval("SELECT count(DISTINCT processed_at) - 1 FROM inbox")
        finally:
            await runtime.stop()
    return Measurement(
        "i",
        "voucher issuance: burst of pending orders -> voucher.issued",
        orders,
        published - started,
        {"issued_committed_per_s": orders / (issued_at - started), "consumer_batches": batches},
    )


async def issuance_in_database(infra: Infra, orders: int, *, batched: bool = False) -> Measurement:
    """(id/ib) The issuance work alone, as the consumer does it: `issuance.issue` for each order (or
    `issue_many` on them all) inside one transaction per batch of 500, with the inbox rows the consumer
    would add, no Kafka in the way."""
    vault = build_vault(VoucherSettings())
    requests = [issuance.OrderRequest(uuid.uuid4(), "db", "m-1", None, "bench") for _ in range(orders)]
    async with scratch_pool(infra.admin_dsn, size=1) as (_, pool):
        await apply_migrations(pool, service_dir=build_spec(VoucherSettings()).migrations_dir)
        async with pool.acquire() as conn, conn.transaction():
            await campaigns.create(conn, _campaign_fields("db"), actor="bench")
            await codes.generate(conn, vault, "db", count=orders, length=12, prefix="", test=False, actor="b")
        started = time.monotonic()
        for first in range(0, orders, 500):
            async with pool.acquire() as conn, conn.transaction():
                await conn.executemany(
                    "INSERT INTO inbox (consumer, event_id, topic, kafka_partition, kafka_offset)"
                    " VALUES ('bench', $1, 'order.state_changed', 0, $2)",
                    [(uuid.uuid4(), i) for i in range(first, min(first + 500, orders))],
                )
                if batched:
                    batch = [batch_issuance.Pending(r) for r in requests[first : first + 500]]
                    await batch_issuance.issue_many(conn, vault, batch)
                else:
                    for request in requests[first : first + 500]:
                        assert await issuance.issue(conn, vault, request) is None
        seconds = time.monotonic() - started
        assert await pool.fetchval("SELECT count(*) FROM issuances") == orders
    if batched:
        return Measurement(
            "ib", "issuance DB work only, set-based (500 orders per transaction)", orders, seconds
        )
    return Measurement("id", "issuance DB work only, order by order (500 per transaction)", orders, seconds)


async def run(infra: Infra, orders: int, code_count: int) -> list[Measurement]:
    raw_topic = await infra.new_topic(6)
    sample = order_events("raw", orders)
    messages = [(str(e.data.order_id).encode(), e.to_bytes()) for e in sample]
    rows = [(e.event_id, value) for e, (_, value) in zip(sample, messages, strict=True)]
    return [
        await baselines.kafka_round_trip(infra, raw_topic, messages),
        await baselines.postgres_inserts(infra, rows, workers=8),
        await issuance_burst(infra, orders),
        await issuance_in_database(infra, orders),
        await issuance_in_database(infra, orders, batched=True),
        await raw_copy(infra, code_count),
        await generation(infra, code_count),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.voucher", description=__doc__)
    parser.add_argument("--orders", type=int, default=5000, help="pending orders in the burst")
    parser.add_argument("--codes", type=int, default=1_000_000, help="codes to generate")
    args = parser.parse_args()
    quiet_logs()
    with open_infra() as infra:
        results = asyncio.run(run(infra, args.orders, args.codes))
    by_key = {m.key: m for m in results}
    print(f"{'':4} {'scenario':60} {'items':>8} {'seconds':>8} {'items/s':>9}  notes")
    for m in results:
        notes = "  ".join(f"{k} {v:.0f}" for k, v in m.extra.items())
        print(f"{m.key:4} {m.label:60} {m.events:8d} {m.seconds:8.2f} {m.rate:9.0f}  {notes}".rstrip())
    print()
    print(f"issuance / raw kafka round trip (i/a):   {by_key['i'].rate / by_key['a'].rate:.3f}")
    print(f"issuance / raw 1-row insert txns (i/b8): {by_key['i'].rate / by_key['b8'].rate:.3f}")
    print(f"issuance DB work / raw inserts (id/b8):  {by_key['id'].rate / by_key['b8'].rate:.3f}")
    print(f"set-based DB work / raw inserts (ib/b8): {by_key['ib'].rate / by_key['b8'].rate:.3f}")
    print(f"generation / raw COPY (g/cp):            {by_key['g'].rate / by_key['cp'].rate:.3f}")
    print(f"{by_key['g'].events} codes generated in {by_key['g'].seconds:.1f} s")


if __name__ == "__main__":
    main()

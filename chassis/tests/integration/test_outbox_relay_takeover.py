"""A frozen outbox relay leader is replaced within 5 s, and publishes nothing when it wakes.

Two relays share one schema while a writer commits events of a few keys. The leader freezes (in
process: its lease renewal stops and its publisher parks at a chosen point; in the last test: a real
SIGSTOP of a relay process), the standby must take over and publish within 5 s, and when the frozen
one resumes with its claimed rows the broker refuses them. The topic then holds every event exactly
once in per-key order for a read_committed reader, and for a read_uncommitted one (our consumers)
once its duplicates are dropped by event_id as the inbox does.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from chassis.db import advisory_lock_key
from chassis.outbox import Lease, OutboxRelay, OutgoingEvent, add_to_outbox
from chassis.testing import wait_until
from contracts.envelope import Envelope, EventData
from deploy.testing import ServiceDb

TAKEOVER_LIMIT_S = 5.0
KEYS = ("k0", "k1", "k2", "k3")


class Counted(EventData):
    key: str
    seq: int


@dataclass
class Writer:
    """Commits one event per key every `every_s`, each transaction after the previous one."""

    pool: asyncpg.Pool
    topic: str
    every_s: float = 0.025
    written: int = 0
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop writing; returns once the last transaction has committed."""
        self.stopped.set()
        if self.task is not None:
            await self.task

    async def _run(self) -> None:
        seq = 0
        while not self.stopped.is_set():
            seq += 1
            events = [
                OutgoingEvent(
                    key=key,
                    topic=self.topic,
                    envelope=Envelope.new(
                        event_type=self.topic, producer="test", data=Counted(key=key, seq=seq)
                    ),
                )
                for key in KEYS
            ]
            async with self.pool.acquire() as conn, conn.transaction():
                await add_to_outbox(conn, events)
            self.written += len(events)
            await asyncio.sleep(self.every_s)


class FreezableRelay(OutboxRelay):
    """A relay whose `freeze()` acts like SIGSTOP at a chosen point: it renews its lease no more, and its
    publisher parks with its next claimed batch in memory, or inside that batch's Kafka transaction
    with half of it already written to the log. `thaw()` lets it go on exactly where it stopped."""

    def __init__(self, *, freeze_at: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.freeze_at = freeze_at
        self.freezing = asyncio.Event()
        self.parked = asyncio.Event()
        self.thawed = asyncio.Event()
        self.woke_and_tried = asyncio.Event()
        self.zombie_error: BaseException | None = None

    def freeze(self) -> None:
        self.freezing.set()

    def thaw(self) -> None:
        self.thawed.set()

    async def _renew(self, conn: asyncpg.Connection, lease: Lease) -> bool:
        if self.freezing.is_set():
            # Frozen, then awake: the publisher gets to send its rows before the renewal finds the
            # lease gone (the order that tests the broker's fencing rather than the lease check).
            await self.woke_and_tried.wait()
        return await super()._renew(conn, lease)

    async def _send(self, producer: AIOKafkaProducer, rows: Sequence[asyncpg.Record]) -> None:
        if not self.freezing.is_set() or self.woke_and_tried.is_set():
            await super()._send(producer, rows)
            return
        try:
            if self.freeze_at == "with its batch in memory":
                self.parked.set()
                await self.thawed.wait()
                await super()._send(producer, rows)
            else:
                await self._send_half_then_park(producer, rows)
        except BaseException as exc:
            self.zombie_error = exc
            raise
        finally:
            self.woke_and_tried.set()

    async def _send_half_then_park(self, producer: AIOKafkaProducer, rows: Sequence[asyncpg.Record]) -> None:
        await producer.begin_transaction()
        half = max(1, len(rows) // 2)
        # Acknowledged: these records are in the log, in a transaction left open by the freeze.
        await asyncio.gather(*[await self._enqueue(producer, row) for row in rows[:half]])
        self.parked.set()
        await self.thawed.wait()
        rest = [await self._enqueue(producer, row) for row in rows[half:]]
        await producer.commit_transaction()
        await asyncio.gather(*rest)


@pytest.fixture
async def writer(pool: asyncpg.Pool, new_topic: Any) -> AsyncIterator[Writer]:
    writer = Writer(pool, await new_topic("takeover", partitions=3))
    writer.start()
    yield writer
    await writer.stop()


@pytest.mark.parametrize("freeze_at", ["with its batch in memory", "inside its Kafka transaction"])
async def test_a_frozen_leader_is_replaced_within_5s_and_publishes_nothing_when_it_wakes(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str, writer: Writer, freeze_at: str
) -> None:
    settings: dict[str, Any] = {
        "dsn": service_db.dsn,
        "schema": service_db.schema,
        "bootstrap_servers": kafka_bootstrap,
    }
    frozen = FreezableRelay(freeze_at=freeze_at, **settings)
    standby = OutboxRelay(**settings)
    await frozen.start()
    await wait_until(lambda: _leads(frozen), what="first relay leads")
    await standby.start()
    try:
        await wait_until(lambda: _published_at_least(pool, 40), what="the leader publishing")
        frozen_at = await _freeze(pool, frozen)
        began = time.monotonic()
        await wait_until(
            lambda: _took_over(pool, standby, frozen_at), timeout=15, interval=0.05, what="takeover"
        )
        took_s = time.monotonic() - began
        assert took_s < TAKEOVER_LIMIT_S, f"the standby published {took_s:.1f}s after the freeze"
        await asyncio.sleep(1.5)  # the new leader publishes later events of the frozen batch's keys
        frozen.thaw()
        await asyncio.wait_for(frozen.woke_and_tried.wait(), timeout=30)
        assert isinstance(frozen.zombie_error, ProducerFenced), repr(frozen.zombie_error)
        await wait_until(lambda: _stands_by(frozen, standby), what="the woken relay stands by")
        await asyncio.sleep(0.5)
        await writer.stop()
        await wait_until(lambda: _all_published(pool), what="every event published")
    finally:
        await frozen.stop()
        await standby.stop()
    print(f"\n{freeze_at}: the standby published {took_s:.2f}s after the freeze")
    committed, uncommitted = await _assert_each_once_in_order(kafka_bootstrap, writer)
    if freeze_at == "inside its Kafka transaction":
        # The frozen transaction's records are in the log, aborted: only read_uncommitted sees them.
        assert uncommitted > committed


async def _freeze(pool: asyncpg.Pool, relay: FreezableRelay) -> datetime:
    """Freeze the relay at its next batch; returns the database time just before, for `created_at`."""
    before: datetime = await pool.fetchval("SELECT clock_timestamp()")
    relay.freeze()
    await asyncio.wait_for(relay.parked.wait(), timeout=5)
    return before


async def _assert_each_once_in_order(bootstrap: str, writer: Writer) -> tuple[int, int]:
    counts = []
    for isolation in ("read_committed", "read_uncommitted"):
        records = await _read_topic(bootstrap, writer.topic, isolation)
        ids = [json.loads(r.value)["event_id"] for r in records]
        if isolation == "read_committed":
            assert len(ids) == len(set(ids)) == writer.written, f"{len(ids)} records, {len(set(ids))} ids"
        seqs = _first_occurrences_by_key(records)
        assert seqs == {key: list(range(1, writer.written // len(KEYS) + 1)) for key in KEYS}, isolation
        counts.append(len(records))
    return counts[0], counts[1]


def _first_occurrences_by_key(records: list[Any]) -> dict[str, list[int]]:
    """Each key's sequence numbers in log order, duplicates dropped by event_id (as the inbox does)."""
    seen: set[str] = set()
    by_key: dict[str, list[int]] = defaultdict(list)
    for record in records:
        envelope = json.loads(record.value)
        if envelope["event_id"] not in seen:
            seen.add(envelope["event_id"])
            by_key[envelope["data"]["key"]].append(envelope["data"]["seq"])
    return dict(by_key)


async def _read_topic(bootstrap: str, topic: str, isolation: str) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation, enable_auto_commit=False
    )
    await consumer.start()
    try:
        known = await consumer._client._wait_on_metadata(topic)
        partitions = [TopicPartition(topic, p) for p in sorted(known)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 30
        for tp in partitions:  # a key lives in one partition: its order is that partition's order
            while await consumer.position(tp) < ends[tp] and time.monotonic() < deadline:
                records.extend((await consumer.getmany(tp, timeout_ms=1000)).get(tp, []))
        return records
    finally:
        await consumer.stop()


async def _leads(relay: OutboxRelay) -> bool:
    return relay.is_leader


async def _stands_by(woken: OutboxRelay, leader: OutboxRelay) -> bool:
    return leader.is_leader and not woken.is_leader


async def _published_at_least(pool: asyncpg.Pool, count: int) -> bool:
    return bool(await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") >= count)


async def _took_over(pool: asyncpg.Pool, standby: OutboxRelay, frozen_at: datetime) -> bool:
    """The standby leads and has published rows written after the freeze (the frozen relay's next batch
    is the one it parked with)."""
    query = "SELECT count(*) FROM outbox WHERE created_at > $1 AND published_at IS NOT NULL"
    return standby.is_leader and bool(await pool.fetchval(query, frozen_at))


async def _all_published(pool: asyncpg.Pool) -> bool:
    return not await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")


RELAY_PROCESS = """
import asyncio, signal, sys
from chassis.outbox import OutboxRelay

async def main() -> None:
    relay = OutboxRelay(dsn=sys.argv[1], schema=sys.argv[2], bootstrap_servers=sys.argv[3])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await relay.start()
    await stop.wait()
    await relay.stop()

asyncio.run(main())
"""


async def test_a_relay_process_stopped_by_sigstop_is_replaced_and_doubles_nothing_after_sigcont(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str, writer: Writer, tmp_path: Path
) -> None:
    args = [service_db.dsn, service_db.schema, kafka_bootstrap]
    processes: list[asyncio.subprocess.Process] = []
    for n in range(2):
        with (tmp_path / f"relay-{n}.log").open("w") as log_file:
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-c", RELAY_PROCESS, *args, stdout=log_file, stderr=log_file
                )
            )
        # The first one leads: the other starts once it does.
        await wait_until(lambda: _lease_held_by(pool, processes[0].pid), what="the first relay process leads")
    try:
        await wait_until(lambda: _published_at_least(pool, 40), what="the leader publishing")
        frozen_at: datetime = await pool.fetchval("SELECT clock_timestamp()")
        processes[0].send_signal(signal.SIGSTOP)
        began = time.monotonic()
        try:
            await wait_until(lambda: _lease_held_by(pool, processes[1].pid), timeout=15, interval=0.05)
            query = "SELECT count(*) FROM outbox WHERE created_at > $1 AND published_at IS NOT NULL"
            await wait_until(lambda: _fetch_true(pool, query, frozen_at), timeout=15, interval=0.05)
            took_s = time.monotonic() - began
            await asyncio.sleep(2)
        finally:
            processes[0].send_signal(signal.SIGCONT)
        assert took_s < TAKEOVER_LIMIT_S, f"the standby process published {took_s:.1f}s after SIGSTOP"
        await asyncio.sleep(2)  # the woken process runs whatever it had in flight
        await writer.stop()
        await wait_until(lambda: _all_published(pool), what="every event published")
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)
            process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), timeout=30)
    print(f"\nSIGSTOP: the standby process published {took_s:.2f}s after the signal")
    await _assert_each_once_in_order(kafka_bootstrap, writer)
    assert await pool.fetchval("SELECT holder FROM outbox_relay_lease") != ""


async def _lease_held_by(pool: asyncpg.Pool, pid: int) -> bool:
    row = await pool.fetchrow("SELECT holder, expires_at > clock_timestamp() AS live FROM outbox_relay_lease")
    return row is not None and row["live"] and row["holder"].rsplit(":", 2)[-2] == str(pid)


async def _fetch_true(pool: asyncpg.Pool, query: str, *args: Any) -> bool:
    return bool(await pool.fetchval(query, *args))


async def test_a_relay_does_not_lead_beside_one_of_the_advisory_lock_version(
    pool: asyncpg.Pool, service_db: ServiceDb, kafka_bootstrap: str
) -> None:
    """During a rolling upgrade the previous relay (leader while it held the schema's advisory lock
    exclusively) and this one must not both publish."""
    old_leader = await asyncpg.connect(service_db.dsn)
    key = advisory_lock_key("outbox-relay", service_db.schema)
    await old_leader.execute("SELECT pg_advisory_lock($1)", key)
    relay = OutboxRelay(dsn=service_db.dsn, schema=service_db.schema, bootstrap_servers=kafka_bootstrap)
    await relay.start()
    try:
        await asyncio.sleep(1.5)
        assert not relay.is_leader
        await old_leader.close()
        await wait_until(lambda: _leads(relay), timeout=5, what="the relay leads once the old one is gone")
        # And an old relay starting now finds the key taken.
        late = await asyncpg.connect(service_db.dsn)
        try:
            assert not await late.fetchval("SELECT pg_try_advisory_lock($1)", key)
        finally:
            await late.close()
    finally:
        await relay.stop()

"""Transactional outbox: state and events commit together; a relay publishes them to Kafka.

The relay is leader-elected per schema (one advisory lock held on its own connection), so events of
one key leave in the order they were written. It claims rows with FOR UPDATE SKIP LOCKED on that same
connection, publishes a batch with an idempotent producer (acks=all), marks the rows published after
the broker acknowledged them, and retries forever with backoff. It wakes on LISTEN/NOTIFY, with a
polling fallback. A crash after the broker acked but before the rows were marked republishes them:
consumers dedupe by event_id (inbox), so delivery is at-least-once and effects exactly-once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge

from contracts.envelope import Envelope

from .db import Connection, advisory_lock_key, quote_ident
from .errors import is_transient

log = structlog.get_logger(__name__)

OUTBOX_PENDING = Gauge("orchard_outbox_pending_events", "Events written but not yet published", ["schema"])
OUTBOX_OLDEST = Gauge(
    "orchard_outbox_oldest_pending_seconds", "Age of the oldest unpublished event (relay lag)", ["schema"]
)
OUTBOX_PUBLISHED = Counter("orchard_outbox_published_total", "Events published by the relay", ["schema"])
OUTBOX_FAILURES = Counter("orchard_outbox_publish_failures_total", "Failed relay rounds", ["schema"])
OUTBOX_LEADER = Gauge(
    "orchard_outbox_relay_leader", "1 while this process runs the schema's relay", ["schema"]
)


def event_headers(envelope: Envelope[Any]) -> dict[str, str]:
    """Headers every event carries, so tools can route and trace without decoding the value."""
    headers = {
        "event_type": envelope.event_type,
        "event_id": str(envelope.event_id),
        "correlation_id": envelope.correlation_id,
        "producer": envelope.producer,
    }
    if envelope.causation_id:
        headers["causation_id"] = envelope.causation_id
    return headers


@dataclass(frozen=True)
class OutgoingEvent:
    key: str
    envelope: Envelope[Any]
    topic: str | None = None

    @property
    def destination(self) -> str:
        return self.topic or self.envelope.event_type


async def add_to_outbox(conn: Connection, events: Sequence[OutgoingEvent]) -> None:
    """Write events in the caller's transaction; nothing is sent unless that transaction commits."""
    if not conn.is_in_transaction():
        raise RuntimeError("outbox writes must share the transaction of the state they describe")
    if not events:
        return
    # One statement for the whole list (one round trip, one trigger call), rows in the list's order.
    await conn.execute(
        """
        INSERT INTO outbox (event_id, topic, message_key, payload, headers)
        SELECT e.id, e.topic, e.key, e.payload, e.headers::jsonb
          FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::text[]) WITH ORDINALITY
               AS e(id, topic, key, payload, headers, n)
         ORDER BY e.n
        """,
        [e.envelope.event_id for e in events],
        [e.destination for e in events],
        [e.key for e in events],
        [e.envelope.to_bytes() for e in events],
        [json.dumps(event_headers(e.envelope)) for e in events],
    )


async def add_event(conn: Connection, envelope: Envelope[Any], *, key: str, topic: str | None = None) -> None:
    await add_to_outbox(conn, [OutgoingEvent(key=key, envelope=envelope, topic=topic)])


class OutboxRelay:
    """Publishes a schema's outbox; run one per service process (standbys wait for the lock)."""

    def __init__(
        self,
        *,
        dsn: str,
        schema: str,
        bootstrap_servers: str,
        batch_size: int = 500,
        poll_interval_s: float = 1.0,
        max_backoff_s: float = 10.0,
        published_retention_s: float = 24 * 3600,
        client_id: str | None = None,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._bootstrap = bootstrap_servers
        self._batch_size = batch_size
        self._poll_interval = poll_interval_s
        self._max_backoff = max_backoff_s
        self._retention = published_retention_s
        self._client_id = client_id or f"orchard-relay-{schema}"
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._conn: asyncpg.Connection | None = None
        self._last_gauge_at = 0.0
        self._last_purge_at = 0.0
        self.is_leader = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._schema}")

    async def stop(self, *, flush_timeout_s: float = 10.0) -> None:
        """Stop after publishing what is pending (bounded by flush_timeout_s)."""
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=flush_timeout_s)
            except TimeoutError:
                log.warning("outbox_flush_timed_out", schema=self._schema)
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        await self._close()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._lead_and_publish()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                OUTBOX_FAILURES.labels(self._schema).inc()
                level = log.warning if is_transient(exc) else log.error
                level("outbox_relay_round_failed", schema=self._schema, error=repr(exc), retry_in_s=backoff)
                await self._close()
                if self._stopping.is_set():
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            server_settings={"search_path": quote_ident(self._schema), "application_name": self._client_id},
        )
        return conn

    async def _lead_and_publish(self) -> None:
        self._conn = conn = await self._connect()
        lock_key = advisory_lock_key("outbox-relay", self._schema)
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key):
            if self._stopping.is_set():
                return
            await self._sleep_or_wake(self._poll_interval)
        self.is_leader = True
        OUTBOX_LEADER.labels(self._schema).set(1)
        await conn.add_listener(f"orchard_outbox_{self._schema}", self._on_notify)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=256 * 1024,
            request_timeout_ms=15_000,
        )
        await self._producer.start()
        log.info("outbox_relay_leading", schema=self._schema)
        while True:
            self._wakeup.clear()
            published = await self._publish_batch(conn, self._producer)
            await self._housekeeping(conn)
            if published >= self._batch_size:
                continue
            if self._stopping.is_set():
                if published == 0:
                    return
                continue
            await self._sleep_or_wake(self._poll_interval)

    async def _publish_batch(self, conn: Connection, producer: AIOKafkaProducer) -> int:
        async with conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, message_key, payload, headers FROM outbox"
                " WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            if not rows:
                return 0
            # send() only enqueues; awaiting all acks after queuing the batch keeps it one round trip,
            # and the idempotent producer keeps per-partition order within it.
            pending = []
            for row in rows:
                headers = [(k, str(v).encode()) for k, v in json.loads(row["headers"]).items()]
                pending.append(
                    await producer.send(
                        row["topic"],
                        value=bytes(row["payload"]),
                        key=row["message_key"].encode(),
                        headers=headers,
                    )
                )
            await asyncio.gather(*pending)
            await conn.execute(
                "UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])",
                [r["id"] for r in rows],
            )
        OUTBOX_PUBLISHED.labels(self._schema).inc(len(rows))
        return len(rows)

    async def _housekeeping(self, conn: Connection) -> None:
        now = time.monotonic()
        if now - self._last_gauge_at >= 1.0:
            self._last_gauge_at = now
            row = await conn.fetchrow(
                "SELECT count(*) AS pending, EXTRACT(EPOCH FROM now() - min(created_at)) AS oldest"
                " FROM outbox WHERE published_at IS NULL"
            )
            assert row is not None
            OUTBOX_PENDING.labels(self._schema).set(row["pending"])
            OUTBOX_OLDEST.labels(self._schema).set(float(row["oldest"] or 0.0))
        if now - self._last_purge_at >= 60.0:
            self._last_purge_at = now
            await conn.execute(
                "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)", self._retention
            )

    def _on_notify(self, *_: object) -> None:
        self._wakeup.set()

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)

    async def _close(self) -> None:
        self.is_leader = False
        OUTBOX_LEADER.labels(self._schema).set(0)
        producer, self._producer = self._producer, None
        conn, self._conn = self._conn, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)
            if not conn.is_closed():
                conn.terminate()

"""Transactional outbox: state and events commit together; a relay publishes them to Kafka.

One relay per schema publishes at a time, so events of one key leave in the order they were written.
It reads the oldest unpublished rows (id order), publishes them as one Kafka transaction, marks them
published after the commit, and retries forever with backoff. It wakes on LISTEN/NOTIFY, with a polling
fallback. A crash after the commit but before the rows were marked republishes them: consumers dedupe
by event_id (inbox), so delivery is at-least-once and effects exactly-once. A published event of a
sensitive topic (`TopicSpec.sensitive`: sealed codes, contact details, one-time codes) keeps its row
but not its payload, which is emptied as the row is marked.

Leadership survives a frozen leader (SIGSTOP, a stalled VM). A session advisory lock would not: the
frozen process keeps its session, so the lock, forever. Instead:

- **Lease.** One row per schema (`outbox_relay_lease`: holder, epoch, expires_at) renewed by the leader
  every `lease_ttl_s / 3` on a connection of its own, so a busy publisher never delays a renewal. A
  standby polls every `lease_ttl_s / 6` and takes the row once expires_at has passed, bumping epoch;
  expiry is judged on the database's clock only. Takeover after a freeze: at most TTL (3 s) + one
  standby poll + starting a producer. A leader that cannot renew steps down (LeaseLost); a leader that
  stops releases the row, so a rolling restart hands over within one standby poll.
- **Fencing.** The lease only decides who *should* publish: a frozen leader wakes with rows in memory,
  maybe inside aiokafka's sender, and no check made before a send closes that window. Kafka closes it.
  Every relay of the schema uses the same transactional ids (derived from the lease row), starts its
  producers only once it holds the lease, and publishes each batch as one transaction. Starting the
  new leader's producers (InitProducerId) bumps their epochs on the broker: the old leader's open
  transaction is aborted, and every later produce, AddPartitionsToTxn or commit of its producers is
  refused (ProducerFenced), so it can neither publish nor mark rows. Kafka's epochs are the tokens
  that keep the log safe; the lease epoch fences the row itself (renewal and release name it).
  A leader publishes only after confirming, once its producers have started, that the lease is still
  its own. So a predecessor either started its producers before ours (fenced) or finds, confirming in
  turn, that the lease moved on; and a successor takes the lease only after this confirmation, so it
  starts its producers after ours and fences them. Without it, a predecessor's start delayed past
  ours could leave each relay with one unfenced producer of the pair (see Cost).
- **No row locks held across a send.** The claim is a plain read and no transaction is open while
  Kafka is awaited (the mark is one autocommit UPDATE). A leader frozen at any point therefore holds no
  lock a successor would have to skip (FOR UPDATE SKIP LOCKED would skip the frozen leader's rows and
  publish later events of their keys first) and no backend has to be terminated. Two relays reading
  the same rows are harmless: only the unfenced producer's transactions commit.

Why order and exactly-once effects hold: a batch is the oldest unpublished rows in id order (parked
rows aside: see below), so for every key it is a prefix of that key's unpublished events; rows are
marked only after their transaction committed, so every earlier event of the key is already in the
log before the batch's records. Only one relay's producers can write at a time, it writes one batch
at a time, and each handover aborts the previous leader's open transaction before the successor
writes. read_committed
consumers see the committed batches in order. Our consumers read uncommitted (FastStream's default,
kept: it spares them the wait for commit markers): they may also see an aborted batch, but its events
of a key are a prefix of those the next committed batch carries again, so once the inbox has dropped
the duplicates by event_id each key's events arrive once, in order (the relay tests check both).

Cost: a transaction adds AddPartitionsToTxn and EndTxn round trips per batch; the commit flushes the
batch without waiting for linger_ms. The transactional ids are `<lease id>-0` and `-1`: two producers
take turns, so a batch never starts on a producer whose last commit's markers are still being written
(aiokafka would wait 20 ms for those: back-to-back one-event transactions took 29 ms on one producer,
6 ms on two). Measured on the shared 2-core machine against the advisory-lock relay, commit to
consumer: a lone event and a steady 100 events/s kept the same latency (p50 6-18 ms either way), and
a 10,000-row backlog drained at the same rate (13-17k/s). Writers saturating the relay
(`python -m bench`, c1 and c50) saw about twice the publish lag (c50 p50 0.5 s instead of 0.2 s): under
that load AddPartitionsToTxn and EndTxn each took 7-8 ms per batch of ~450 rows (~30 ms before, ~45 ms
now). Overlapping one batch's commit with the next one's sends would win most of it back.

Unpublishable events are parked. A record the broker will never take (larger than it accepts, a topic
it refuses or that is invalid, a topic still missing once the broker answered; see `_record_error`)
would fail every transaction of its batch, and the relay would retry that batch forever. When a batch
fails for such a record, the rows before it are published in a transaction of their own, the culprit's
`publish_attempts` and `last_error` are recorded, and the round fails (backing off as any failure
does, so a topic being created has time to appear). After `max_publish_attempts` (default 5) the row
is parked (`parked_at`): the claim skips it and the events after it go out. Transient failures (broker
down, timeouts) never count an attempt: they are retried forever, as before. A record refused by the
producer itself (larger than max_request_size) is known at once; one refused by the broker fails every
record of its record batch and leaves the idempotent producer's sequence numbers behind the broker's,
so the round fails (new producers, fenced and confirmed as always) and the rows of that batch are then
sent one per transaction until the culprit is found (its own single-record transaction fails).
Trade-off: parking a row of key K lets K's later events be published without it, so consumers see
K's events with a gap. A parked row is an operator's decision point: it is logged at error level
(`outbox_event_parked`: row id, topic, reason; never the payload), counted in
`orchard_outbox_parked_events`, listed by `orchard outbox parked` and sent again, after the later events,
by `orchard outbox retry` once its cause is fixed (or left parked, deliberately).

Rolling upgrade from the advisory-lock relay: every relay here holds that key *shared* while it stands
by or leads, so an old relay (which takes it exclusively) and a new one never lead at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from prometheus_client import Counter, Gauge

from contracts.envelope import Envelope
from contracts.registry import SENSITIVE_TOPICS

from .db import Connection, advisory_lock_key, quote_ident, schema_of
from .errors import is_transient
from .kafka_security import client_options
from .tracing import trace_headers
from .wakeups import listen_locally, notify_after_commit

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
OUTBOX_PARKED = Gauge(
    "orchard_outbox_parked_events",
    "Events the relay gave up publishing (parked); each needs an operator's decision",
    ["schema"],
)
OUTBOX_LEADERSHIP_LOST = Counter(
    "orchard_outbox_relay_leadership_lost_total",
    "Times this process's relay lost its lease or found its producer fenced by a newer leader",
    ["schema"],
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
        [json.dumps(event_headers(e.envelope) | trace_headers(e.envelope.causation_id)) for e in events],
    )
    schema = schema_of(conn)
    if schema is None:
        await conn.execute(_NOTIFY_RELAY)  # delivered when the caller's transaction commits
    else:
        await notify_after_commit(conn, relay_channel(schema))


_NOTIFY_RELAY = "SELECT pg_notify('orchard_outbox_' || current_schema(), '')"


def relay_channel(schema: str) -> str:
    """The channel a schema's relay listens on. Writers wake it after their commit, not with a NOTIFY
    queued inside the transaction (chassis/wakeups.py says why)."""
    return f"orchard_outbox_{schema}"


async def add_event(conn: Connection, envelope: Envelope[Any], *, key: str, topic: str | None = None) -> None:
    await add_to_outbox(conn, [OutgoingEvent(key=key, envelope=envelope, topic=topic)])


# Failures caused by one record that no retry of the same record can cure.
_RECORD_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    InvalidTopicError,
)


class RecordRejected(Exception):
    """The batch's transaction failed because of the record at `index` (an unpublishable event).

    index is None when the broker refused a record batch: it fails every record the producer put in
    that batch, so the culprit is not known yet.
    """

    def __init__(self, index: int | None, error: BaseException, *, by_broker: bool) -> None:
        where = "a record" if index is None else f"record {index}"
        super().__init__(f"{where} of the batch rejected: {error!r}")
        self.index = index
        self.error = error
        # The broker refused it: the idempotent producer's sequence numbers no longer match the
        # broker's, so the producers must be started again (a failed round) before the next send.
        self.by_broker = by_broker


class LeaseLost(Exception):
    """This relay no longer holds the schema's lease: another one took it, or it was not renewed."""


@dataclass(frozen=True)
class Lease:
    holder: str
    epoch: int
    transactional_id: str


_TAKE_LEASE = """
WITH prev AS (SELECT holder, expires_at FROM outbox_relay_lease FOR UPDATE)
UPDATE outbox_relay_lease AS l
   SET holder = $1, epoch = l.epoch + 1, expires_at = clock_timestamp() + make_interval(secs => $2)
  FROM prev
 WHERE prev.expires_at < clock_timestamp() OR prev.holder = $1
RETURNING l.epoch, l.transactional_id, prev.holder AS previous,
          EXTRACT(EPOCH FROM clock_timestamp() - prev.expires_at) AS expired_for_s
"""
_RENEW_LEASE = """
UPDATE outbox_relay_lease SET expires_at = clock_timestamp() + make_interval(secs => $3)
 WHERE holder = $1 AND epoch = $2
RETURNING true
"""
_RELEASE_LEASE = "UPDATE outbox_relay_lease SET expires_at = '-infinity' WHERE holder = $1 AND epoch = $2"


class OutboxRelay:
    """Publishes a schema's outbox; run one per service process (standbys wait for the lease)."""

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
        lease_ttl_s: float = 3.0,
        coalesce_s: float = 0.004,
        max_publish_attempts: int = 5,
        sensitive_topics: Collection[str] = SENSITIVE_TOPICS,
    ) -> None:
        self._dsn = dsn
        self._schema = schema
        self._bootstrap = bootstrap_servers
        self._batch_size = batch_size
        self._poll_interval = poll_interval_s
        self._max_backoff = max_backoff_s
        self._retention = published_retention_s
        self._client_id = client_id or f"orchard-relay-{schema}"
        self._lease_ttl = lease_ttl_s
        self._coalesce_s = coalesce_s
        # Set after the broker refused a record batch: rows up to this id are sent one per transaction,
        # so the refused record is found (the broker fails every record of the batch it refuses).
        self._one_by_one_through: int | None = None
        self._max_attempts = max(1, max_publish_attempts)
        self._sensitive = sorted(sensitive_topics)
        self._standby_poll = min(poll_interval_s, lease_ttl_s / 6)
        # Unique per relay object: re-taking one's own lease after a failed round needs no wait.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lease_valid_until = 0.0
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producers: list[AIOKafkaProducer] = []
        self._conn: asyncpg.Connection | None = None
        self._lease_conn: asyncpg.Connection | None = None
        self._last_gauge_at = 0.0
        self._last_purge_at = 0.0
        self.is_leader = False
        self._stop_listening: Callable[[], None] = lambda: None

    async def start(self) -> None:
        self._stop_listening = listen_locally(self._schema, relay_channel(self._schema), self._woken)
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._schema}")

    def _woken(self, _: str) -> bool:
        """Events were committed in this process: publish them now if leading (else the leader, in
        another process, needs the NOTIFY)."""
        if self.is_leader:
            self._wakeup.set()
        return self.is_leader

    async def stop(self, *, flush_timeout_s: float = 10.0) -> None:
        """Stop after publishing what is pending (bounded by flush_timeout_s)."""
        self._stop_listening()
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
                await self._stand_by_then_lead()
                return
            except asyncio.CancelledError:
                raise
            except (LeaseLost, ProducerFenced) as exc:
                # Not a failure: a newer leader exists. Stand by again at once.
                OUTBOX_LEADERSHIP_LOST.labels(self._schema).inc()
                log.warning("outbox_relay_leadership_lost", schema=self._schema, reason=repr(exc))
                await self._close()
                backoff = 0.1
            except Exception as exc:
                OUTBOX_FAILURES.labels(self._schema).inc()
                level = log.warning if is_transient(exc) else log.error
                level("outbox_relay_round_failed", schema=self._schema, error=repr(exc), retry_in_s=backoff)
                await self._close()
                if self._stopping.is_set():
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            if self._stopping.is_set():
                return

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self._dsn,
            server_settings={"search_path": quote_ident(self._schema), "application_name": self._client_id},
        )
        return conn

    async def _stand_by_then_lead(self) -> None:
        self._lease_conn = lease_conn = await self._connect()
        lease = await self._wait_for_lease(lease_conn)
        if lease is None:
            return
        # Renewal starts before the producer does: a slow InitProducerId must not let the lease lapse.
        keeper = asyncio.create_task(self._keep_lease(lease_conn, lease), name=f"outbox-lease-{self._schema}")
        leader = asyncio.create_task(self._lead(lease), name=f"outbox-publish-{self._schema}")
        try:
            done, _ = await asyncio.wait({keeper, leader}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # LeaseLost from the keeper, or the publisher's failure
        finally:
            for task in (keeper, leader):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        # Stopped cleanly with nothing pending: hand over now rather than after the TTL.
        try:
            await lease_conn.execute(_RELEASE_LEASE, lease.holder, lease.epoch, timeout=2)
        except Exception as exc:  # the lease then simply expires
            log.warning("outbox_relay_lease_not_released", schema=self._schema, error=repr(exc))

    async def _wait_for_lease(self, conn: asyncpg.Connection) -> Lease | None:
        """Poll until this relay holds the lease; None when asked to stop first."""
        legacy_key = advisory_lock_key("outbox-relay", self._schema)
        while not await conn.fetchval("SELECT pg_try_advisory_lock_shared($1)", legacy_key):
            if self._stopping.is_set():
                return None
            await self._sleep_or_wake(self._standby_poll)
        while True:
            asked_at = time.monotonic()
            row = await conn.fetchrow(_TAKE_LEASE, self.holder, self._lease_ttl)
            if row is not None:
                self._lease_valid_until = asked_at + self._lease_ttl
                log.info(
                    "outbox_relay_lease_taken",
                    schema=self._schema,
                    epoch=row["epoch"],
                    previous_holder=row["previous"] or None,
                    expired_for_s=round(float(row["expired_for_s"]), 3),
                )
                return Lease(self.holder, row["epoch"], row["transactional_id"])
            if self._stopping.is_set():
                return None
            await self._sleep_or_wake(self._standby_poll)

    async def _keep_lease(self, conn: asyncpg.Connection, lease: Lease) -> None:
        """Renew until the lease is lost (raises LeaseLost) or the task is cancelled."""
        while True:
            await asyncio.sleep(self._lease_ttl / 3)
            asked_at = time.monotonic()
            if not await self._renew(conn, lease):
                raise LeaseLost(f"epoch {lease.epoch} was taken over")
            self._lease_valid_until = asked_at + self._lease_ttl

    async def _renew(self, conn: asyncpg.Connection, lease: Lease) -> bool:
        renewed = await conn.fetchval(
            _RENEW_LEASE, lease.holder, lease.epoch, self._lease_ttl, timeout=self._lease_ttl
        )
        return bool(renewed)

    def _check_lease(self) -> None:
        # A leader that woke after its lease ran out stops before claiming rows; were it to send them,
        # the broker would refuse them (its producers are fenced once a successor's have started).
        if time.monotonic() > self._lease_valid_until:
            raise LeaseLost("not renewed within its TTL")

    async def _lead(self, lease: Lease) -> None:
        self._conn = conn = await self._connect()
        producers = await self._start_producers(lease.transactional_id)
        # Still ours once the producers started: every earlier leader's producers are fenced now, and a
        # later leader can only start its own after this (module docstring, Fencing).
        if not await self._renew(conn, lease):
            raise LeaseLost(f"epoch {lease.epoch} was taken over while the producers started")
        self.is_leader = True
        OUTBOX_LEADER.labels(self._schema).set(1)
        await conn.add_listener(relay_channel(self._schema), self._on_notify)
        log.info("outbox_relay_leading", schema=self._schema, epoch=lease.epoch)
        for turn in itertools.count():
            self._wakeup.clear()
            self._check_lease()
            published = await self._publish_batch(conn, producers[turn % len(producers)])
            await self._housekeeping(conn)
            if published >= self._batch_size:
                continue
            if self._stopping.is_set():
                if published == 0:
                    return
                continue
            await self._sleep_or_wake(self._poll_interval)
            if published and self._coalesce_s:
                # Events are flowing (the last round found some): a few milliseconds let the commits
                # landing together share one Kafka transaction, whose fixed cost on the broker (add
                # partitions, end, markers) dominated at a steady trickle. An event after a quiet
                # spell goes at once.
                await asyncio.sleep(self._coalesce_s)

    async def _start_producers(self, transactional_id: str) -> list[AIOKafkaProducer]:
        # Two producers take turns. A transaction begun while the coordinator still writes the
        # previous commit's markers is refused (CONCURRENT_TRANSACTIONS) and aiokafka retries it 20 ms
        # later, which back-to-back batches on one producer would always pay; by a producer's next turn
        # its markers are written. Each batch commits before the next is sent: the log keeps id order.
        self._producers = [
            AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                transactional_id=f"{transactional_id}-{n}",
                **client_options(),
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
                max_batch_size=256 * 1024,
                request_timeout_ms=15_000,
            )
            for n in range(2)
        ]
        # start() runs InitProducerId: once both return, every earlier leader's producers are fenced.
        await asyncio.gather(*(producer.start() for producer in self._producers))
        return self._producers

    async def _publish_batch(self, conn: Connection, producer: AIOKafkaProducer) -> int:
        # A plain read, no transaction: nothing stays locked while Kafka is awaited (module docstring).
        one_by_one = self._one_by_one_through is not None
        rows = await conn.fetch(
            "SELECT id, topic, message_key, payload, headers FROM outbox"
            " WHERE published_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT $1",
            1 if one_by_one else self._batch_size,
        )
        if not rows:
            self._one_by_one_through = None
            return 0
        try:
            await self._send(producer, rows)
        except RecordRejected as rejected:
            if rejected.index is None:
                self._one_by_one_through = rows[-1]["id"]
                raise
            # The rows before the culprit are a prefix of every key's unpublished events: publishing
            # them first keeps the order. The ones after it wait for the next round.
            if rejected.index:
                await self._send(producer, rows[: rejected.index])
                await self._mark_published(conn, rows[: rejected.index])
            parked = await self._record_attempt(conn, rows[rejected.index], rejected.error)
            if parked and not rejected.by_broker:
                self._wakeup.set()  # go on with the events after it at once
                return rejected.index + 1
            raise  # a failed round: back off, then try again (on new producers if the broker refused)
        if self._one_by_one_through is not None:
            if rows[-1]["id"] >= self._one_by_one_through:
                self._one_by_one_through = None
            self._wakeup.set()  # the next row at once
        await self._mark_published(conn, rows)
        return len(rows)

    async def _mark_published(self, conn: Connection, rows: Sequence[asyncpg.Record]) -> None:
        # A sensitive event (a sealed code, contact details, a one-time code) keeps its row (event id,
        # topic, key, time: for dedupe, ordering and the lag figures) but not its payload.
        await conn.execute(
            "UPDATE outbox SET published_at = clock_timestamp(),"
            " payload = CASE WHEN topic = ANY($2::text[]) THEN ''::bytea ELSE payload END"
            " WHERE id = ANY($1::bigint[]) AND published_at IS NULL",
            [r["id"] for r in rows],
            self._sensitive,
        )
        OUTBOX_PUBLISHED.labels(self._schema).inc(len(rows))

    async def _record_attempt(self, conn: Connection, row: asyncpg.Record, error: BaseException) -> bool:
        """Count a failed attempt of an unpublishable row; True once it is parked."""
        reason = f"{type(error).__name__}: {error}"
        result = await conn.fetchrow(
            "UPDATE outbox SET publish_attempts = publish_attempts + 1, last_error = $2,"
            " parked_at = CASE WHEN publish_attempts + 1 >= $3 THEN clock_timestamp() END"
            " WHERE id = $1 AND published_at IS NULL AND parked_at IS NULL"
            " RETURNING publish_attempts, parked_at IS NOT NULL AS parked",
            row["id"],
            reason,
            self._max_attempts,
        )
        if result is None:
            return False
        event_log = log.bind(
            schema=self._schema,
            outbox_id=row["id"],
            topic=row["topic"],
            reason=reason,
            attempts=result["publish_attempts"],
        )
        if result["parked"]:
            event_log.error(
                "outbox_event_parked",
                note="later events of its key are published without it; retry or drop it deliberately",
            )
            return True
        event_log.warning("outbox_event_unpublishable", parks_after=self._max_attempts)
        return False

    async def _send(self, producer: AIOKafkaProducer, rows: Sequence[asyncpg.Record]) -> None:
        """Publish the rows as one Kafka transaction; returns once it committed.

        Raises RecordRejected when the transaction failed because a record can never be published.
        """
        pending: list[asyncio.Future[Any]] = []
        try:
            async with producer.transaction():
                # send() only enqueues; the commit flushes the whole batch first (without lingering) and
                # fails if any record failed. The idempotent producer keeps per-partition order within it.
                for index, row in enumerate(rows):
                    try:
                        pending.append(await self._enqueue(producer, row))
                    except Exception as exc:
                        if await self._record_error(producer, row, exc):
                            raise RecordRejected(index, exc, by_broker=False) from exc
                        raise
            await asyncio.gather(*pending)
        except RecordRejected:
            raise
        except Exception as exc:
            for index, future in enumerate(pending):
                if future.done() and not future.cancelled():
                    error = future.exception()
                    if error is not None and await self._record_error(producer, rows[index], error):
                        # A commit refused for a failed record leaves the transaction to be aborted.
                        with contextlib.suppress(Exception):  # already aborted, or fatal
                            await producer.abort_transaction()
                        raise RecordRejected(0 if len(rows) == 1 else None, error, by_broker=True) from exc
            raise

    @staticmethod
    async def _record_error(producer: AIOKafkaProducer, row: asyncpg.Record, exc: BaseException) -> bool:
        """True when exc is the record's own fault: retrying the same record cannot succeed."""
        if isinstance(exc, _RECORD_ERRORS):
            return True
        if isinstance(exc, UnknownTopicOrPartitionError):
            # Also what a producer without the topic's metadata raises while the broker is down: only a
            # broker that answered and still lacks the topic makes it the record's fault.
            client = producer.client
            with contextlib.suppress(Exception):
                if await asyncio.wait_for(client.force_metadata_update(), timeout=5):
                    return row["topic"] not in client.cluster.topics()
        return False

    @staticmethod
    async def _enqueue(producer: AIOKafkaProducer, row: asyncpg.Record) -> asyncio.Future[Any]:
        headers = [(k, str(v).encode()) for k, v in json.loads(row["headers"]).items()]
        future: asyncio.Future[Any] = await producer.send(
            row["topic"], value=bytes(row["payload"]), key=row["message_key"].encode(), headers=headers
        )
        return future

    async def _housekeeping(self, conn: Connection) -> None:
        now = time.monotonic()
        if now - self._last_gauge_at >= 1.0:
            self._last_gauge_at = now
            row = await conn.fetchrow(
                "SELECT count(*) AS pending, EXTRACT(EPOCH FROM now() - min(created_at)) AS oldest"
                " FROM outbox WHERE published_at IS NULL AND parked_at IS NULL"
            )
            assert row is not None
            OUTBOX_PENDING.labels(self._schema).set(row["pending"])
            OUTBOX_OLDEST.labels(self._schema).set(float(row["oldest"] or 0.0))
            parked = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL AND parked_at IS NOT NULL"
            )
            OUTBOX_PARKED.labels(self._schema).set(parked)
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
        producers, self._producers = self._producers, []
        conns = [self._conn, self._lease_conn]
        self._conn = self._lease_conn = None
        for producer in producers:
            # A fenced producer's sender has died: stop() may then wait on nothing that will come.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=5)
        for conn in conns:
            if conn is None:
                continue
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)
            if not conn.is_closed():
                conn.terminate()


@dataclass(frozen=True)
class ParkedEvent:
    id: int
    topic: str
    key: str
    attempts: int
    last_error: str | None
    parked_at: Any


async def list_parked(conn: Connection) -> list[ParkedEvent]:
    """The schema's parked outbox rows (no payload), oldest first."""
    rows = await conn.fetch(
        "SELECT id, topic, message_key AS key, publish_attempts AS attempts, last_error, parked_at"
        " FROM outbox WHERE published_at IS NULL AND parked_at IS NOT NULL ORDER BY id"
    )
    return [ParkedEvent(**r) for r in rows]


async def retry_parked(conn: Connection, ids: Sequence[int] | None = None) -> list[int]:
    """Un-park rows (all, or the given ids) so the relay tries them again; returns the ids un-parked.

    They go out after whatever of their key the relay published meanwhile (module docstring, parking).
    """
    rows = await conn.fetch(
        "UPDATE outbox SET parked_at = NULL, publish_attempts = 0"
        " WHERE published_at IS NULL AND parked_at IS NOT NULL AND ($1::bigint[] IS NULL OR id = ANY($1))"
        " RETURNING id",
        list(ids) if ids else None,
    )
    if rows:
        await conn.execute(_NOTIFY_RELAY)
    return sorted(r["id"] for r in rows)

"""At-least-once Kafka consumption with an inbox and dead-lettering, on FastStream.

Each subscription is a FastStream batch subscriber with its own consumer group and MANUAL acks.
For every batch: decode each message against its contract (failures go straight to the DLQ), run
the handlers of the new events in ONE Postgres transaction together with their inbox rows, commit,
publish dead letters, and only then commit the Kafka offsets. A redelivered event finds its inbox row
and changes nothing. A handler that keeps failing on one event is retried a few times, then that
event alone is dead-lettered and the rest of the batch goes on. Infrastructure failures (database or
broker down) are retried with backoff from the last committed offset and never dead-lettered.

A replayed dead letter (`orchard dlq replay`) names the consumer group that failed it in a header:
every other group reading the topic passes it over before decoding it, with no handler call and no
inbox row, and commits its offset like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, KafkaError
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from opentelemetry.trace import Span
from prometheus_client import Counter, Histogram

from contracts.envelope import ContractViolation, Envelope, EventData

from . import tracing
from .db import Connection
from .errors import is_transient
from .kafka_security import client_options

log = structlog.get_logger(__name__)


Handler = Callable[[Connection, Envelope[Any]], Awaitable[None]]
# Must have the effect of calling the subscription's `handle` on each envelope in turn.
BatchHandler = Callable[[Connection, Sequence[Envelope[Any]]], Awaitable[None]]

CONSUMED = Counter("orchard_events_consumed_total", "Events handled", ["consumer", "topic", "outcome"])
BATCH_FALLBACKS = Counter(
    "orchard_consumer_batch_fallbacks_total",
    "Batches a batch handler refused, then handled event by event",
    ["consumer"],
)
BATCH_SECONDS = Histogram("orchard_consumer_batch_seconds", "Time to handle one fetched batch", ["consumer"])

DLQ_HEADER_PREFIX = "x-orchard-dlq-"
REPLAY_TARGET_HEADER = "x-orchard-replay-for"
"""On a replayed dead letter: the consumer group it is replayed for, the only one that handles it."""


@dataclass(frozen=True)
class Subscription:
    """One handler for one topic; `name` identifies it in the inbox and its consumer group."""

    name: str
    topic: str
    payload: type[EventData]
    handle: Handler
    event_type: str | None = None  # the envelope's event_type on this topic; defaults to the topic name
    # Optional: the whole batch's new events at once, in order (see the module docstring).
    handle_batch: BatchHandler | None = None
    # Optional: False for a payload the handler would do nothing with. Such events are passed over
    # without a transaction or an inbox row (doing nothing twice needs no dedupe): most subscriptions
    # read a topic for a few kinds of its events, and the rest cost a commit each at a steady trickle.
    relevant: Callable[[Any], bool] | None = None

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"


@dataclass(eq=False)  # identity, so batch items can sit in sets
class _Incoming:
    record: Any
    envelope: Envelope[Any] | None = None
    dead_reason: str | None = None
    dead_code: str | None = None
    passed_over: bool = False
    for_another_group: bool = False
    failures: int = 0
    last_error: BaseException | None = field(default=None, repr=False)


def _log_of(sub: Subscription) -> Any:
    """The log of one subscription's consumer: each line names the subscription and its topic."""
    return log.bind(consumer=sub.name, topic=sub.topic)


def dlq_headers(
    record: Any, *, reason: str, code: str, attempts: int, consumer: str
) -> list[tuple[str, bytes]]:
    """The original headers plus why, where from and how often it failed."""
    extra = {
        "error": reason[:2000],
        "error-code": code,
        "attempts": str(attempts),
        "original-topic": record.topic,
        "original-partition": str(record.partition),
        "original-offset": str(record.offset),
        "consumer": consumer,
        "failed-at": datetime.now(UTC).isoformat(),
    }
    original = [(k, v) for k, v in (record.headers or ()) if not k.startswith(DLQ_HEADER_PREFIX)]
    return original + [(DLQ_HEADER_PREFIX + k, v.encode()) for k, v in extra.items()]


class _BatchRefused(Exception):
    """A batch handler failed on a batch: roll its transaction back and apply it event by event."""


class EventConsumer:
    """Registers subscriptions on a FastStream broker and processes their batches safely."""

    def __init__(
        self,
        *,
        broker: KafkaBroker,
        pool: asyncpg.Pool,
        service: str,
        bootstrap_servers: str,
        max_attempts: int = 5,
        max_batch: int = 500,
        idle_wait_ms: int = 1000,
        commit_interval_s: float = 0.5,
        fetch_max_wait_ms: int = 5000,
        fetch_min_bytes: int = 1,
        max_partition_fetch_bytes: int = 256 * 1024,
        group_prefix: str = "orchard",
    ) -> None:
        self._broker = broker
        self._pool = pool
        self._service = service
        self._bootstrap = bootstrap_servers
        self._max_attempts = max_attempts
        self._max_batch = max_batch
        self._idle_wait_ms = idle_wait_ms
        self._commit_interval_s = commit_interval_s
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._fetch_min_bytes = fetch_min_bytes
        self._max_partition_fetch_bytes = max_partition_fetch_bytes
        self._commits: list[_OffsetCommits] = []
        self._group_prefix = group_prefix
        self._dlq_producer: AIOKafkaProducer | None = None
        self._dlq_lock = asyncio.Lock()
        self.subscriptions: list[Subscription] = []

    def group_id(self, sub: Subscription) -> str:
        return f"{self._group_prefix}.{self._service}.{sub.name}"

    def subscribe(self, sub: Subscription) -> None:
        self.subscriptions.append(sub)
        backoff = _Backoff()
        commits = _OffsetCommits(sub.name, self._commit_interval_s)
        self._commits.append(commits)

        async def on_batch(body: Any) -> None:
            # The message is read from the context, not injected: an injected `Context("message")` is
            # resolved by a synchronous function that FastStream's injector runs in a worker thread,
            # a thread hand-off for every fetched batch of every subscription.
            message = self._broker.context.get_local("message")
            records = tuple(message.raw_message)
            if not records:
                return
            try:
                with BATCH_SECONDS.labels(sub.name).time():
                    await self.process(sub, records)
                await commits.processed(message.consumer, records)
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next()
                _log_of(sub).warning(
                    "consumer_batch_retry",
                    transient=is_transient(exc),
                    error=repr(exc),
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                with contextlib.suppress(Exception):
                    await message.nack()

        subscriber = self._broker.subscriber(
            sub.topic,
            batch=True,
            max_records=self._max_batch,
            batch_timeout_ms=self._idle_wait_ms,
            group_id=self.group_id(sub),
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            fetch_min_bytes=self._fetch_min_bytes,
            max_partition_fetch_bytes=self._max_partition_fetch_bytes,
            ack_policy=AckPolicy.MANUAL,
            decoder=_raw_decoder,
            title=f"{self._service}:{sub.name}",
            description=f"{self._service} handles {sub.topic} ({sub.payload.__name__})",
        )
        subscriber(on_batch)
        _fetch_without_idle_nap(subscriber, self._max_batch, self._idle_wait_ms)

    async def process(self, sub: Subscription, records: Sequence[Any]) -> None:
        """Handle one batch; return only when every record is applied, known, or dead-lettered."""
        group = self.group_id(sub)
        items = [
            self._decode(sub, r)
            if _replay_target(r) in (None, group)
            else _Incoming(r, passed_over=True, for_another_group=True)
            for r in records
        ]
        if sub.relevant is not None:
            for item in items:
                if item.envelope is not None and not sub.relevant(item.envelope.data):
                    item.passed_over = True
        spans = {
            str(i.envelope.event_id): tracing.start_event_span(
                topic=sub.topic,
                group=group,
                event_id=str(i.envelope.event_id),
                key=i.record.key,
                headers=i.record.headers,
            )
            for i in items
            if i.envelope is not None and i.dead_reason is None and not i.passed_over
        }
        try:
            await self._apply(sub, items, spans)
        except BaseException as exc:
            for span in spans.values():
                tracing.end_failed(span, exc)
            raise
        for item in items:
            ended = spans.get(str(item.envelope.event_id)) if item.envelope is not None else None
            if ended is None:
                continue
            if item.dead_reason is not None and item.last_error is not None:
                tracing.end_failed(ended, item.last_error)
            else:
                ended.end()
        dead = [i for i in items if i.dead_reason is not None]
        if dead:
            await self._dead_letter(sub, dead)
        passed_over = sum(1 for i in items if i.passed_over and not i.for_another_group)
        for_others = sum(1 for i in items if i.for_another_group)
        CONSUMED.labels(sub.name, sub.topic, "handled").inc(len(items) - len(dead) - passed_over - for_others)
        CONSUMED.labels(sub.name, sub.topic, "dead_lettered").inc(len(dead))
        CONSUMED.labels(sub.name, sub.topic, "passed_over").inc(passed_over)
        CONSUMED.labels(sub.name, sub.topic, "replay_for_another_group").inc(for_others)

    async def _apply(self, sub: Subscription, items: list[_Incoming], spans: dict[str, Span]) -> None:
        """Apply the batch's live events in one transaction (retrying one that fails, up to the limit).

        A batch handler runs in the batch's transaction itself, not under a savepoint of its own: a
        savepoint costs two more round trips on every batch, and a batch handler that fails is rare.
        When it refuses a batch, the whole transaction (inbox rows included) is rolled back and the
        batch is applied again event by event.
        """
        batch_handler = sub.handle_batch
        while True:
            live = [i for i in items if i.dead_reason is None and not i.passed_over]
            current: _Incoming | None = None
            try:
                if live:
                    async with self._pool.acquire() as conn, conn.transaction():
                        fresh = await self._claim_in_inbox(conn, sub, live)
                        if batch_handler is not None and fresh:
                            await self._handle_batch(conn, sub, batch_handler, live, fresh, spans)
                        else:
                            for item in live:
                                if item in fresh:
                                    current = item
                                    await self._handle_one(conn, sub, item, spans)
                            current = None
                break
            except _BatchRefused:
                batch_handler = None  # the batch goes event by event from now on
            except Exception as exc:
                if current is None or is_transient(exc):
                    raise
                current.failures += 1
                current.last_error = exc
                if current.failures >= self._max_attempts:
                    current.dead_reason = f"{type(exc).__name__}: {exc}"
                    current.dead_code = "handler_failed"
                    _log_of(sub).error(
                        "event_dead_lettered",
                        error=repr(exc),
                        attempts=current.failures,
                    )
                else:
                    await asyncio.sleep(0.05 * current.failures)

    @staticmethod
    async def _handle_one(
        conn: Connection, sub: Subscription, item: _Incoming, spans: dict[str, Span]
    ) -> None:
        envelope = item.envelope
        assert envelope is not None
        with (
            structlog.contextvars.bound_contextvars(
                correlation_id=envelope.correlation_id,
                causation_id=envelope.causation_id,
                event_id=str(envelope.event_id),
            ),
            tracing.handling(spans, current=spans.get(str(envelope.event_id))),
        ):
            await sub.handle(conn, envelope)

    async def _handle_batch(
        self,
        conn: Connection,
        sub: Subscription,
        handler: BatchHandler,
        live: list[_Incoming],
        fresh: set[_Incoming],
        spans: dict[str, Span],
    ) -> None:
        """Run the batch handler; raise _BatchRefused (the transaction is then rolled back) if it fails."""
        envelopes = [i.envelope for i in live if i in fresh and i.envelope is not None]
        batch = tracing.batch_span(sub.topic, list(spans.values()))
        try:
            with tracing.handling(spans, current=batch):
                await handler(conn, envelopes)
        except Exception as exc:
            if is_transient(exc):
                raise
            BATCH_FALLBACKS.labels(sub.name).inc()
            _log_of(sub).warning(
                "consumer_batch_handler_failed",
                events=len(envelopes),
                error=repr(exc),
                fallback="event by event",
            )
            raise _BatchRefused from exc
        finally:
            batch.end()

    def _decode(self, sub: Subscription, record: Any) -> _Incoming:
        try:
            if record.value is None:
                raise ContractViolation("message has no value (tombstone)", code="undecodable")
            envelope = Envelope.decode(record.value, sub.payload, expected_type=sub.event_type or sub.topic)
            return _Incoming(record, envelope=envelope)
        except ContractViolation as exc:
            _log_of(sub).error(
                "event_rejected_by_contract",
                code=exc.code,
                partition=record.partition,
                offset=record.offset,
                reason=exc.reason,
            )
            return _Incoming(record, dead_reason=exc.reason, dead_code=exc.code, failures=1)

    async def _claim_in_inbox(
        self, conn: Connection, sub: Subscription, live: list[_Incoming]
    ) -> set[_Incoming]:
        """Record the batch's events in the inbox; those already there were handled before."""
        first_by_id: dict[Any, _Incoming] = {}
        for item in live:
            assert item.envelope is not None
            first_by_id.setdefault(item.envelope.event_id, item)
        rows = await conn.fetch(
            """
            INSERT INTO inbox (consumer, event_id, topic, kafka_partition, kafka_offset)
            SELECT $1, e.id, $2, e.part, e.off
              FROM unnest($3::uuid[], $4::int[], $5::bigint[]) AS e(id, part, off)
            ON CONFLICT DO NOTHING
            RETURNING event_id
            """,
            sub.name,
            sub.topic,
            list(first_by_id),
            [i.record.partition for i in first_by_id.values()],
            [i.record.offset for i in first_by_id.values()],
        )
        fresh = {first_by_id[r["event_id"]] for r in rows}
        duplicates = len(live) - len(fresh)
        if duplicates:
            CONSUMED.labels(sub.name, sub.topic, "duplicate").inc(duplicates)
        return fresh

    async def _dead_letter(self, sub: Subscription, dead: list[_Incoming]) -> None:
        producer = await self._producer()
        pending = []
        for item in dead:
            record = item.record
            pending.append(
                await producer.send(
                    sub.dlq_topic,
                    value=record.value,
                    key=record.key,
                    headers=dlq_headers(
                        record,
                        reason=item.dead_reason or "unknown",
                        code=item.dead_code or "unknown",
                        attempts=item.failures,
                        consumer=self.group_id(sub),
                    ),
                )
            )
        await asyncio.gather(*pending)

    async def _producer(self) -> AIOKafkaProducer:
        async with self._dlq_lock:
            if self._dlq_producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    client_id=f"orchard-{self._service}-dlq",
                    enable_idempotence=True,
                    acks="all",
                    **client_options(),
                )
                await producer.start()
                self._dlq_producer = producer
            return self._dlq_producer

    async def stopping(self) -> None:
        """Commit what is handled now, and from here on every batch as soon as it is handled: the
        service is about to stop its Kafka consumers, and a restart should redeliver nothing."""
        for commits in self._commits:
            await commits.flush(urgent_from_now=True)

    async def close(self) -> None:
        for commits in self._commits:
            commits.cancel()
        if self._dlq_producer is not None:
            with contextlib.suppress(Exception):
                await self._dlq_producer.stop()
            self._dlq_producer = None


class _OffsetCommits:
    """The offsets one subscription has handled, committed to Kafka at most every `interval_s`.

    A commit per fetched batch costs a broker round trip and a write to `__consumer_offsets` for
    every batch of every consumer group: at a steady trickle (batches of one or two events) that was
    a large share of the pipeline's CPU. Offsets are still committed only after their batch's
    database commit, and always as explicit offsets of handled records (never the consumer's
    position, which may already be past a batch being handled). A crash or rebalance between two
    commits redelivers up to `interval_s` of events, which the inbox recognises.
    """

    def __init__(self, name: str, interval_s: float) -> None:
        self._name = name
        self._interval_s = interval_s
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: Any = None
        self._last_commit = 0.0
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._urgent = False

    async def processed(self, consumer: Any, records: Sequence[Any]) -> None:
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._pending[tp] = max(self._pending.get(tp, 0), record.offset + 1)
        self._consumer = consumer
        wait_s = self._last_commit + self._interval_s - time.monotonic()
        if self._urgent or wait_s <= 0:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_after(wait_s), name=f"commit-{self._name}")

    async def _flush_after(self, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        self._timer = None
        await self.flush()

    async def flush(self, *, urgent_from_now: bool = False) -> None:
        self._urgent = self._urgent or urgent_from_now
        async with self._lock:
            offsets, self._pending = self._pending, {}
            if not offsets or self._consumer is None:
                return
            self._last_commit = time.monotonic()
            try:
                await self._consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # The group rebalanced: whoever owns these partitions now starts from the last
                # committed offsets and the inbox recognises what was handled here.
                log.info("offset_commit_dropped", consumer=self._name, error=repr(exc))
            except (KafkaError, ConsumerStoppedError) as exc:
                log.warning("offset_commit_failed", consumer=self._name, error=repr(exc))
                for tp, offset in offsets.items():
                    self._pending[tp] = max(self._pending.get(tp, 0), offset)
                if self._timer is None:
                    self._timer = asyncio.create_task(self._flush_after(self._interval_s))

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _fetch_without_idle_nap(subscriber: Any, max_records: int, idle_wait_ms: int) -> None:
    """FastStream's batch subscriber naps `batch_timeout_ms` after a fetch that found nothing, and an
    event arriving during the nap waits all of it: tens of milliseconds per hop at a steady trickle.
    aiokafka's `getmany` already returns as soon as a record is there, so waiting long with no nap
    delays no lone event, keeps an idle subscription's polling rare, and a backlog still comes in
    batches of up to `max_records` (batches only grow when events wait)."""

    async def get_msg(consumer: Any) -> tuple[Any, ...]:
        fetched = await consumer.getmany(timeout_ms=idle_wait_ms, max_records=max_records)
        return tuple(chain.from_iterable(fetched.values()))

    subscriber.get_msg = get_msg


def _replay_target(record: Any) -> str | None:
    for key, value in record.headers or ():
        if key == REPLAY_TARGET_HEADER:
            return bytes(value).decode("utf-8", "replace")
    return None


async def _raw_decoder(message: Any) -> None:
    """Leave bodies undecoded: the consumer decodes each record against its contract itself."""
    return None


class _Backoff:
    def __init__(self, first: float = 0.2, cap: float = 5.0) -> None:
        self._first = first
        self._cap = cap
        self._current = 0.0

    def next(self) -> float:
        self._current = self._first if self._current == 0 else min(self._current * 2, self._cap)
        return self._current

    def reset(self) -> None:
        self._current = 0.0

"""The inbox consumer and dead-lettering against the real Kafka and Postgres."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from chassis.consumer import EventConsumer, Subscription
from chassis.db import apply_migrations, create_pool
from chassis.dlq import list_dead_letters, replay_dead_letters
from chassis.errors import TransientError
from chassis.testing import committed_offsets, produce, read_topic, wait_until
from contracts.envelope import Envelope, EventData


class Tick(EventData):
    n: int


def tick(topic: str, n: int) -> Envelope[Tick]:
    return Envelope.new(event_type=topic, producer="test", data=Tick(n=n))


@pytest.fixture
async def pool(service_db):
    pool = await create_pool(service_db.dsn, schema=service_db.schema)
    await apply_migrations(pool)
    await pool.execute(
        "CREATE TABLE effects (id bigserial PRIMARY KEY, n int NOT NULL, event_id uuid NOT NULL)"
    )
    yield pool
    await pool.close()


class Handler:
    """Applies ticks as effect rows; can be told to fail for some ticks."""

    def __init__(self) -> None:
        self.poisoned: set[int] = set()
        self.transient_failures_left = 0
        self.calls = 0

    async def __call__(self, conn: Any, envelope: Envelope[Any]) -> None:
        self.calls += 1
        if self.transient_failures_left > 0:
            self.transient_failures_left -= 1
            raise TransientError("database is busy")
        await conn.execute(
            "INSERT INTO effects (n, event_id) VALUES ($1, $2)", envelope.data.n, envelope.event_id
        )
        if envelope.data.n in self.poisoned:
            raise ValueError(f"tick {envelope.data.n} violates an invariant")


def consumer_of(pool, kafka_bootstrap: str, sub: Subscription, **options: Any):
    """A consumer of one subscription under a fresh service name, its broker not started yet."""
    broker = KafkaBroker(kafka_bootstrap)
    consumer = EventConsumer(
        broker=broker,
        pool=pool,
        service=f"test{uuid.uuid4().hex[:6]}",
        bootstrap_servers=kafka_bootstrap,
        **options,
    )
    consumer.subscribe(sub)
    return broker, consumer


async def started(pool, kafka_bootstrap: str, sub: Subscription, **options: Any):
    """A consumer of one subscription under a fresh service name, its broker started."""
    broker, consumer = consumer_of(pool, kafka_bootstrap, sub, **options)
    await broker.start()
    return broker, consumer


@pytest.fixture
async def running(pool, kafka_bootstrap, new_topic):
    topic = await new_topic("ticks")
    handler = Handler()
    sub = Subscription(name="ticks", topic=topic, payload=Tick, handle=handler)
    broker, consumer = await started(pool, kafka_bootstrap, sub, max_attempts=3)
    yield topic, handler, consumer, sub
    await broker.stop()
    await consumer.close()


async def effects(pool) -> list[int]:
    return [r["n"] for r in await pool.fetch("SELECT n FROM effects ORDER BY n")]


async def test_a_redelivered_event_changes_nothing(pool, running, kafka_bootstrap):
    topic, _, consumer, sub = running
    envelope = tick(topic, 1)
    await produce(kafka_bootstrap, topic, [(b"1", envelope.to_bytes())] * 3)
    await wait_until(lambda: _has(pool, 1), what="the tick applied")
    records = await read_topic(kafka_bootstrap, topic)
    await consumer.process(sub, records)  # the same batch again, as after a crash before the offset commit
    assert await effects(pool) == [1]


async def test_poison_messages_go_to_the_dlq_and_the_rest_is_processed(pool, running, kafka_bootstrap):
    topic, handler, consumer, sub = running
    handler.poisoned.add(3)
    wrong_shape = json.loads(tick(topic, 9).to_bytes())
    wrong_shape["data"] = {"n": "not a number"}
    await produce(
        kafka_bootstrap,
        topic,
        [
            (b"1", tick(topic, 1).to_bytes()),
            (b"x", b"\xff\xfe not json"),
            (b"y", json.dumps(wrong_shape).encode()),
            (b"3", tick(topic, 3).to_bytes()),
            (b"4", tick(topic, 4).to_bytes()),
        ],
        headers=[("trace", b"abc")],
    )
    await wait_until(lambda: _has(pool, 1, 4), what="good ticks applied")
    await wait_until(lambda: _dlq_size(kafka_bootstrap, topic, 3), what="three dead letters")
    letters = await list_dead_letters(kafka_bootstrap, [topic + ".dlq"])
    assert sorted(d.error_code for d in letters) == ["contract_violation", "handler_failed", "undecodable"]
    failed = next(d for d in letters if d.error_code == "handler_failed")
    assert failed.attempts == 3
    assert "violates an invariant" in failed.error
    assert failed.original_topic == topic
    assert dict(failed.headers)["trace"] == b"abc"
    assert await effects(pool) == [1, 4]
    await wait_until(
        lambda: _committed_to_end(kafka_bootstrap, consumer.group_id(sub), topic),
        what="offsets committed past poison",
    )


async def test_a_dead_letter_replayed_after_the_fix_is_applied_once(pool, running, kafka_bootstrap):
    topic, handler, _, _ = running
    handler.poisoned.add(7)
    poison = tick(topic, 7)
    await produce(kafka_bootstrap, topic, [(b"7", poison.to_bytes())])
    await wait_until(lambda: _dlq_size(kafka_bootstrap, topic, 1), what="tick 7 dead-lettered")
    assert await effects(pool) == []
    handler.poisoned.clear()
    assert await replay_dead_letters(kafka_bootstrap, topic + ".dlq", event_ids=[str(poison.event_id)]) == 1
    await wait_until(lambda: _has(pool, 7), what="replayed tick applied")
    assert await replay_dead_letters(kafka_bootstrap, topic + ".dlq") == 1  # replay-all: first time
    assert await replay_dead_letters(kafka_bootstrap, topic + ".dlq") == 0  # nothing new since
    await wait_until(lambda: _calls_at_least(handler, 1), what="handler saw the replay")
    assert await effects(pool) == [7]


async def test_a_transient_failure_is_retried_and_never_dead_lettered(pool, running, kafka_bootstrap):
    topic, handler, _, _ = running
    handler.transient_failures_left = 4  # more than max_attempts: transient failures don't count
    await produce(kafka_bootstrap, topic, [(b"5", tick(topic, 5).to_bytes())])
    await wait_until(lambda: _has(pool, 5), timeout=30, what="tick applied after the database came back")
    assert await list_dead_letters(kafka_bootstrap, [topic + ".dlq"]) == []


async def _has(pool, *ns: int) -> bool:
    return set(ns) <= set(await effects(pool))


async def _dlq_size(bootstrap: str, topic: str, size: int) -> bool:
    return len(await list_dead_letters(bootstrap, [topic + ".dlq"])) >= size


async def _committed_to_end(bootstrap: str, group: str, topic: str) -> bool:
    committed = await committed_offsets(bootstrap, group, topic)
    records = await read_topic(bootstrap, topic)
    ends: dict[int, int] = {}
    for r in records:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    return all(committed.get(p, -1) >= end for p, end in ends.items())


async def _calls_at_least(handler: Handler, n: int) -> bool:
    return handler.calls >= n


class BatchHandler:
    """Applies a whole batch of ticks with one statement; refuses the batch if any tick is poisoned."""

    def __init__(self, single: Handler) -> None:
        self.single = single
        self.batches: list[list[int]] = []
        self.transient_failures_left = 0

    async def __call__(self, conn: Any, envelopes: Any) -> None:
        ns = [e.data.n for e in envelopes]
        self.batches.append(ns)
        if self.transient_failures_left > 0:
            self.transient_failures_left -= 1
            raise TransientError("database is busy")
        await conn.execute(
            "INSERT INTO effects (n, event_id) SELECT * FROM unnest($1::int[], $2::uuid[])",
            ns,
            [e.event_id for e in envelopes],
        )
        if set(ns) & self.single.poisoned:
            raise ValueError("a tick of the batch violates an invariant")


@pytest.fixture
async def running_batched(pool, kafka_bootstrap, new_topic):
    topic = await new_topic("ticks")
    single = Handler()
    batch = BatchHandler(single)
    sub = Subscription(name="ticks", topic=topic, payload=Tick, handle=single, handle_batch=batch)
    broker, consumer = consumer_of(pool, kafka_bootstrap, sub, max_attempts=3)
    yield topic, batch, consumer, sub, broker
    await broker.stop()
    await consumer.close()


async def test_a_batch_handler_gets_the_new_events_of_a_batch_at_once_and_only_once(
    pool, running_batched, kafka_bootstrap
):
    topic, batch, consumer, sub, _ = running_batched
    envelopes = [tick(topic, n) for n in range(1, 6)]
    await produce(kafka_bootstrap, topic, [(b"k", e.to_bytes()) for e in envelopes + envelopes[:2]])
    records = sorted(await read_topic(kafka_bootstrap, topic), key=lambda r: r.offset)
    await consumer.process(sub, records)
    assert batch.batches == [[1, 2, 3, 4, 5]]  # in order, the repeats of 1 and 2 left out
    await consumer.process(sub, records)  # redelivered: every event is in the inbox already
    assert batch.batches == [[1, 2, 3, 4, 5]]
    assert batch.single.calls == 0
    assert await effects(pool) == [1, 2, 3, 4, 5]


async def test_a_refused_batch_falls_back_to_one_by_one_and_only_the_poison_is_dead_lettered(
    pool, running_batched, kafka_bootstrap
):
    topic, batch, consumer, sub, _ = running_batched
    batch.single.poisoned.add(3)
    await produce(kafka_bootstrap, topic, [(b"k", tick(topic, n).to_bytes()) for n in range(1, 6)])
    records = sorted(await read_topic(kafka_bootstrap, topic), key=lambda r: r.offset)
    await consumer.process(sub, records)
    assert batch.batches == [[1, 2, 3, 4, 5]]  # tried once as a batch; its effects were rolled back
    assert await effects(pool) == [1, 2, 4, 5]
    letters = await list_dead_letters(kafka_bootstrap, [topic + ".dlq"])
    assert [(d.error_code, d.attempts) for d in letters] == [("handler_failed", 3)]
    assert "violates an invariant" in letters[0].error
    assert await pool.fetchval("SELECT count(*) FROM inbox WHERE consumer = 'ticks'") == 4


async def test_a_transient_failure_of_a_batch_handler_retries_the_batch_and_never_falls_back(
    pool, running_batched, kafka_bootstrap
):
    topic, batch, consumer, sub, _ = running_batched
    batch.transient_failures_left = 1
    await produce(kafka_bootstrap, topic, [(b"k", tick(topic, n).to_bytes()) for n in (1, 2)])
    records = sorted(await read_topic(kafka_bootstrap, topic), key=lambda r: r.offset)
    with pytest.raises(TransientError):
        await consumer.process(sub, records)
    assert await effects(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 0  # the batch's inbox rows rolled back too
    await consumer.process(sub, records)  # as the consumer loop does after its backoff
    assert batch.batches == [[1, 2], [1, 2]]
    assert batch.single.calls == 0
    assert await effects(pool) == [1, 2]


async def test_a_broker_driven_batch_handler_consumes_the_topic(pool, running_batched, kafka_bootstrap):
    topic, batch, _, _, broker = running_batched
    await broker.start()
    await produce(kafka_bootstrap, topic, [(str(n).encode(), tick(topic, n).to_bytes()) for n in range(40)])
    await wait_until(lambda: _has(pool, *range(40)), what="every tick applied through batches")
    assert sorted(n for b in batch.batches for n in b) == list(range(40))
    assert batch.single.calls == 0


async def test_handled_offsets_are_committed_after_the_interval_even_when_nothing_follows(
    pool, kafka_bootstrap, new_topic
):
    topic = await new_topic("ticks")
    sub = Subscription(name="ticks", topic=topic, payload=Tick, handle=Handler())
    broker, consumer = await started(pool, kafka_bootstrap, sub, commit_interval_s=0.5)
    try:
        for n in range(1, 6):  # one lone event after another: the first commits at once, the rest later
            await produce(kafka_bootstrap, topic, [(str(n).encode(), tick(topic, n).to_bytes())])
            await wait_until(lambda n=n: _has(pool, n), what=f"tick {n} applied")
        await wait_until(
            lambda: _committed_to_end(kafka_bootstrap, consumer.group_id(sub), topic),
            what="the last lone event's offset committed by the timer",
        )
    finally:
        await broker.stop()
        await consumer.close()


async def test_a_stopping_consumer_commits_what_it_handled_at_once(pool, kafka_bootstrap, new_topic):
    topic = await new_topic("ticks")
    sub = Subscription(name="ticks", topic=topic, payload=Tick, handle=Handler())
    broker, consumer = await started(pool, kafka_bootstrap, sub, commit_interval_s=3600)
    try:
        await produce(kafka_bootstrap, topic, [(b"1", tick(topic, 1).to_bytes())])
        await wait_until(lambda: _has(pool, 1), what="tick 1 applied")
        await produce(kafka_bootstrap, topic, [(b"2", tick(topic, 2).to_bytes())])
        await wait_until(lambda: _has(pool, 2), what="tick 2 applied")
        assert not await _committed_to_end(kafka_bootstrap, consumer.group_id(sub), topic)
        await consumer.stopping()
        assert await _committed_to_end(kafka_bootstrap, consumer.group_id(sub), topic)
    finally:
        await broker.stop()
        await consumer.close()


async def test_events_the_handler_does_nothing_with_are_passed_over_without_an_inbox_row(
    pool, kafka_bootstrap, new_topic
):
    topic = await new_topic("ticks")
    handler = Handler()
    sub = Subscription(
        name="even-ticks", topic=topic, payload=Tick, handle=handler, relevant=lambda data: data.n % 2 == 0
    )
    broker, consumer = await started(pool, kafka_bootstrap, sub)
    try:
        ticks = [tick(topic, n) for n in range(1, 7)]
        await produce(kafka_bootstrap, topic, [(b"k", t.to_bytes()) for t in ticks])
        await wait_until(lambda: _has(pool, 2, 4, 6), what="the even ticks applied")
        await wait_until(
            lambda: _committed_to_end(kafka_bootstrap, consumer.group_id(sub), topic),
            what="offsets committed past the odd ticks too",
        )
        assert await effects(pool) == [2, 4, 6]
        assert handler.calls == 3
        inbox = await pool.fetch("SELECT event_id FROM inbox WHERE consumer = 'even-ticks'")
        assert {r["event_id"] for r in inbox} == {t.event_id for t in ticks if t.data.n % 2 == 0}
    finally:
        await broker.stop()
        await consumer.close()


@pytest.fixture
async def two_groups(pool, kafka_bootstrap, new_topic):
    """Two services' consumer groups reading one topic, each with its own handler and inbox name."""
    topic = await new_topic("ticks")
    handlers = {"a": Handler(), "b": Handler()}
    running = {
        name: (
            sub := Subscription(name=f"{name}-ticks", topic=topic, payload=Tick, handle=handler),
            *await started(pool, kafka_bootstrap, sub, max_attempts=3),
        )
        for name, handler in handlers.items()
    }
    yield topic, handlers, {name: consumer.group_id(sub) for name, (sub, _, consumer) in running.items()}
    for _, broker, consumer in running.values():
        await broker.stop()
        await consumer.close()


async def _inbox_of(pool, consumer: str) -> list[Any]:
    return [
        r["event_id"] for r in await pool.fetch("SELECT event_id FROM inbox WHERE consumer = $1", consumer)
    ]


async def _dead_lettered_by_group_a(bootstrap: str, topic: str, handlers: dict[str, Any]) -> Envelope[Any]:
    """Tick 7, which group a's handler keeps failing on, sent and dead-lettered."""
    handlers["a"].poisoned.add(7)
    poison = tick(topic, 7)
    await produce(bootstrap, topic, [(b"7", poison.to_bytes())])
    await wait_until(lambda: _dlq_size(bootstrap, topic, 1), what="tick 7 dead-lettered by group a")
    return poison


async def test_a_replayed_dead_letter_is_handled_by_the_group_that_failed_it_and_no_other(
    pool, two_groups, kafka_bootstrap
):
    topic, handlers, groups = two_groups
    poison = await _dead_lettered_by_group_a(kafka_bootstrap, topic, handlers)
    await wait_until(lambda: _committed_to_end(kafka_bootstrap, groups["b"], topic), what="b handled tick 7")
    (letter,) = await list_dead_letters(kafka_bootstrap, [topic])
    assert letter.consumer == groups["a"]
    assert handlers["b"].calls == 1
    # Group b's inbox row is purged: were the replay to reach b, it would handle tick 7 a second time.
    await pool.execute("DELETE FROM inbox WHERE consumer = 'b-ticks'")
    handlers["a"].poisoned.clear()

    assert await replay_dead_letters(kafka_bootstrap, topic, event_ids=[str(poison.event_id)]) == 1

    await wait_until(lambda: _inbox_has(pool, "a-ticks", poison.event_id), what="group a handled the replay")
    await wait_until(
        lambda: _committed_to_end(kafka_bootstrap, groups["b"], topic), what="b passed the replay over"
    )
    assert handlers["b"].calls == 1
    assert await _inbox_of(pool, "b-ticks") == []
    assert await effects(pool) == [7, 7]  # b's first handling and a's replay, nothing more


async def test_a_dead_letter_replayed_twice_is_handled_once_by_the_group_that_failed_it(
    pool, two_groups, kafka_bootstrap
):
    topic, handlers, groups = two_groups
    poison = await _dead_lettered_by_group_a(kafka_bootstrap, topic, handlers)
    handlers["a"].poisoned.clear()
    calls_before_replay = handlers["a"].calls

    assert await replay_dead_letters(kafka_bootstrap, topic, event_ids=[str(poison.event_id)]) == 1
    assert await replay_dead_letters(kafka_bootstrap, topic) == 1  # replay-all: its first time

    for group in groups.values():
        await wait_until(lambda g=group: _committed_to_end(kafka_bootstrap, g, topic), what=f"{group} at end")
    assert handlers["a"].calls == calls_before_replay + 1
    assert await _inbox_of(pool, "a-ticks") == [poison.event_id]
    assert handlers["b"].calls == 1
    assert await effects(pool) == [7, 7]


async def test_replay_for_one_group_leaves_the_letters_of_other_groups_in_the_dlq(
    pool, two_groups, kafka_bootstrap
):
    topic, handlers, groups = two_groups
    handlers["a"].poisoned.add(7)
    handlers["b"].poisoned.add(8)
    await produce(
        kafka_bootstrap, topic, [(b"7", tick(topic, 7).to_bytes()), (b"8", tick(topic, 8).to_bytes())]
    )
    await wait_until(lambda: _dlq_size(kafka_bootstrap, topic, 2), what="one dead letter from each group")
    assert [d.consumer for d in await list_dead_letters(kafka_bootstrap, [topic], group=groups["b"])] == [
        groups["b"]
    ]
    handlers["b"].poisoned.clear()

    assert await replay_dead_letters(kafka_bootstrap, topic, group=groups["b"]) == 1
    assert await replay_dead_letters(kafka_bootstrap, topic, group=groups["b"]) == 0

    await wait_until(lambda: _inbox_has(pool, "b-ticks", None, n=2), what="group b handled its replay")
    for group in groups.values():
        await wait_until(lambda g=group: _committed_to_end(kafka_bootstrap, g, topic), what=f"{group} at end")
    assert len(await _inbox_of(pool, "a-ticks")) == 1  # tick 8 only: tick 7 is still a dead letter
    assert await replay_dead_letters(kafka_bootstrap, topic, group=groups["a"]) == 1


async def _inbox_has(pool, consumer: str, event_id: Any, *, n: int = 1) -> bool:
    rows = await _inbox_of(pool, consumer)
    return event_id in rows if event_id is not None else len(rows) >= n

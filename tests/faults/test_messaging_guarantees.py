"""Fault tests of the outbox and inbox: real processes killed with SIGKILL, a real broker and a
real Postgres restarted mid-stream. Each ends by checking nothing was lost and nothing doubled."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from chassis.testing import committed_offsets, produce, read_topic, wait_until
from contracts.envelope import Envelope
from deploy.infra.kafka import KafkaBroker
from deploy.infra.topics import TopicDef, ensure_topics
from tests.faults.probe_app import ProbeEvent

pytestmark = pytest.mark.fault


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _effects_summary(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS total, count(DISTINCT n) AS distinct_n FROM probe_effects"
        )
        return int(row["total"]), int(row["distinct_n"])
    finally:
        await conn.close()


async def _all_applied(dsn: str, expected: int) -> bool:
    try:
        _, distinct = await _effects_summary(dsn)
    except (OSError, asyncpg.PostgresError):
        return False
    return distinct >= expected


async def _outbox_drained(dsn: str, expected: int) -> bool:
    try:
        published = await _count(dsn, "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
        written = await _count(dsn, "SELECT count(*) FROM probe_state")
    except (OSError, asyncpg.PostgresError):
        return False
    return written == expected and published >= expected


async def _broker_with_topic(private_kafka: Callable[[], KafkaBroker]) -> tuple[KafkaBroker, str]:
    """A broker of the test's own (to kill and restart) with a fresh topic for the probes."""
    kafka = private_kafka()
    topic = f"probe-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka.bootstrap_servers, [TopicDef(topic)])
    return kafka, topic


def _service() -> str:
    return f"probe{uuid.uuid4().hex[:6]}"


async def _start_pair(
    probes, make_schema, *, admin_dsn: str, bootstrap: str, topic: str, total: int, **producer_env: str
):
    """A producing probe and a consuming probe, each with its own schema, as two services would be."""
    producer_dsn, producer_schema = await make_schema(admin_dsn)
    consumer_dsn, consumer_schema = await make_schema(admin_dsn)
    common = {"bootstrap": bootstrap, "topic": topic}
    consumer = probes("consume", service=_service(), dsn=consumer_dsn, schema=consumer_schema, **common)
    producer = probes(
        "produce",
        service=_service(),
        dsn=producer_dsn,
        schema=producer_schema,
        PROBE_COUNT=str(total),
        **producer_env,
        **common,
    )
    consumer.start()
    producer.start()
    return producer, consumer, producer_dsn, consumer_dsn


async def _assert_all_published_and_applied_once(producer_dsn: str, consumer_dsn: str, total: int) -> int:
    await wait_until(
        lambda: _outbox_drained(producer_dsn, total), timeout=120, what="all rows written and published"
    )
    await wait_until(lambda: _all_applied(consumer_dsn, total), timeout=120, what="every event applied")
    applied, distinct = await _effects_summary(consumer_dsn)
    assert (applied, distinct) == (total, total), f"{applied - distinct} effects applied twice"
    return applied


async def test_relay_killed_at_random_moments_loses_no_event_and_effects_apply_once(
    infra, kafka_bootstrap, new_topic, make_schema, probes
):
    total = 3000
    topic = await new_topic("probe", partitions=3)
    producer, _, producer_dsn, consumer_dsn = await _start_pair(
        probes, make_schema, admin_dsn=infra.admin_dsn, bootstrap=kafka_bootstrap, topic=topic, total=total
    )
    rng = random.Random(20261123)  # reproducible kill moments
    kills = 0
    while kills < 6:
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        producer.kill()
        kills += 1
        producer.start()
    applied = await _assert_all_published_and_applied_once(producer_dsn, consumer_dsn, total)
    published = [json.loads(r.value)["data"]["n"] for r in await read_topic(kafka_bootstrap, topic)]
    assert set(published) == set(range(1, total + 1)), "an event never reached Kafka"
    print(
        f"\nrelay SIGKILLed {kills}x: {total} events, {len(published)} sends "
        f"({len(published) - total} resent), {applied} effects, 0 doubled"
    )


async def test_consumer_killed_after_db_commit_before_offset_commit_applies_nothing_twice(
    infra, kafka_bootstrap, new_topic, make_schema, probes
):
    total = 400
    topic = await new_topic("probe", partitions=2)
    dsn, schema = await make_schema(infra.admin_dsn)
    service = _service()
    events = [
        Envelope.new(event_type=topic, producer="test", data=ProbeEvent(n=n)) for n in range(1, total + 1)
    ]
    await produce(kafka_bootstrap, topic, [(str(e.data.n).encode(), e.to_bytes()) for e in events])

    crashing = probes(
        "consume", service=service, dsn=dsn, schema=schema, bootstrap=kafka_bootstrap, topic=topic
    )
    crashing.start(PROBE_CRASH_AFTER_BATCHES="1")
    assert crashing.wait_exit(120) == -9
    applied_before_crash, _ = await _effects_summary(dsn)
    committed = await committed_offsets(kafka_bootstrap, f"orchard.{service}.probe", topic)
    assert applied_before_crash > 0, "the first batch was not committed to the database"
    assert sum(max(o, 0) for o in committed.values()) == 0, "offsets were committed before the crash"

    crashing.start()
    await wait_until(lambda: _all_applied(dsn, total), timeout=120, what="every event applied after restart")
    applied, distinct = await _effects_summary(dsn)
    assert (applied, distinct) == (total, total)
    redelivered = await _count(dsn, "SELECT count(*) FROM inbox")
    assert redelivered == total
    print(
        f"\nconsumer SIGKILLed after committing {applied_before_crash} effects;"
        f" redelivered, {applied} applied once"
    )


async def test_broker_restart_mid_stream_loses_nothing_and_readiness_follows_it(
    infra, private_kafka, make_schema, probes
):
    total = 2000
    kafka, topic = await _broker_with_topic(private_kafka)
    producer, consumer, producer_dsn, consumer_dsn = await _start_pair(
        probes, make_schema, admin_dsn=infra.admin_dsn, bootstrap=kafka.bootstrap_servers, topic=topic,
        total=total, PROBE_PAUSE_S="0.02",
    )  # fmt: skip
    await _outage_and_recovery(producer, consumer, stop=kafka.kill, start=kafka.start)
    applied = await _assert_all_published_and_applied_once(producer_dsn, consumer_dsn, total)
    print(f"\nbroker SIGKILLed and restarted mid-stream: {total} events, {applied} applied once")


async def test_postgres_restart_mid_stream_loses_nothing_and_readiness_follows_it(
    kafka_bootstrap, private_postgres, new_topic, make_schema, probes
):
    total = 2000
    pg = private_postgres()
    topic = await new_topic("probe", partitions=3)
    producer, consumer, producer_dsn, consumer_dsn = await _start_pair(
        probes, make_schema, admin_dsn=pg.admin_dsn, bootstrap=kafka_bootstrap, topic=topic, total=total,
        PROBE_PAUSE_S="0.02",
    )  # fmt: skip
    await _outage_and_recovery(producer, consumer, stop=pg.stop, start=pg.start, consumer_sees_it=True)
    applied = await _assert_all_published_and_applied_once(producer_dsn, consumer_dsn, total)
    print(f"\nPostgres stopped and restarted mid-stream: {total} events, {applied} applied once")


async def _outage_and_recovery(producer, consumer, *, stop, start, consumer_sees_it: bool = False) -> None:
    """Take a dependency away mid-stream: readiness must go 503 while it is gone and 200 after."""
    await asyncio.to_thread(producer.wait_status, 200)
    await asyncio.to_thread(consumer.wait_status, 200)
    await asyncio.sleep(1.5)
    await asyncio.to_thread(stop)
    await asyncio.to_thread(producer.wait_status, 503, 30)
    if consumer_sees_it:
        await asyncio.to_thread(consumer.wait_status, 503, 30)
    await asyncio.sleep(2)
    await asyncio.to_thread(start)
    await asyncio.to_thread(producer.wait_status, 200, 60)
    await asyncio.to_thread(consumer.wait_status, 200, 60)


async def test_sigterm_drains_the_outbox_and_exits_cleanly(
    infra, kafka_bootstrap, new_topic, make_schema, probes
):
    total = 5000
    topic = await new_topic("probe", partitions=3)
    dsn, schema = await make_schema(infra.admin_dsn)
    producer = probes(
        "produce",
        service=_service(),
        dsn=dsn,
        schema=schema,
        bootstrap=kafka_bootstrap,
        topic=topic,
        PROBE_COUNT=str(total),
        PROBE_ROWS_PER_TX="50",
        PROBE_PAUSE_S="0",
    )
    producer.start()
    await asyncio.to_thread(producer.wait_status, 200)
    await wait_until(lambda: _state_rows_at_least(dsn, 500), what="a burst under way")
    started = asyncio.get_running_loop().time()
    exit_code = await asyncio.to_thread(producer.terminate, 30)
    took = asyncio.get_running_loop().time() - started
    assert exit_code == 0, f"exit code {exit_code} after SIGTERM; see {producer.log_path}"
    written = await _count(dsn, "SELECT count(*) FROM probe_state")
    unpublished = await _count(dsn, "SELECT count(*) FROM outbox WHERE published_at IS NULL")
    assert unpublished == 0, f"{unpublished} of {written} events left unpublished at shutdown"
    in_kafka = {json.loads(r.value)["data"]["n"] for r in await read_topic(kafka_bootstrap, topic)}
    assert len(in_kafka) == written
    print(
        f"\nSIGTERM mid-burst: exited 0 in {took:.1f}s with {written} rows written,"
        f" all {len(in_kafka)} published"
    )


async def _state_rows_at_least(dsn: str, n: int) -> bool:
    return await _count(dsn, "SELECT count(*) FROM probe_state") >= n


async def test_a_service_started_before_the_broker_becomes_ready_when_it_answers(
    infra, private_kafka, make_schema, probes
):
    total = 300
    kafka, topic = await _broker_with_topic(private_kafka)
    await asyncio.to_thread(kafka.stop)
    producer, consumer, producer_dsn, consumer_dsn = await _start_pair(
        probes, make_schema, admin_dsn=infra.admin_dsn, bootstrap=kafka.bootstrap_servers, topic=topic,
        total=total,
    )  # fmt: skip
    await asyncio.to_thread(producer.wait_status, 503, 60)
    await asyncio.to_thread(consumer.wait_status, 503, 60)
    await asyncio.sleep(3)
    await asyncio.to_thread(kafka.start)
    await asyncio.to_thread(producer.wait_status, 200, 60)
    await asyncio.to_thread(consumer.wait_status, 200, 60)
    applied = await _assert_all_published_and_applied_once(producer_dsn, consumer_dsn, total)
    print(f"\nservices started with the broker down: ready once it came up; {applied} events applied once")

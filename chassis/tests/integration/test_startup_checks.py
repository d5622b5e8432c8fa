"""A service checks the broker's retention of its DLQ topics before it consumes anything."""

import asyncio
import os
import sys
import uuid
from asyncio.subprocess import PIPE
from typing import Any

import pytest

from chassis.consumer import Subscription
from chassis.service import ServiceRuntime, ServiceSpec, StartupRefused
from chassis.settings import Settings
from chassis.testing import wait_until
from contracts.envelope import EventData
from deploy.infra.net import free_port
from deploy.infra.topics import TopicDef, ensure_topics

DAY_MS = 24 * 3600 * 1000


class Tick(EventData):
    n: int


async def _ignore(conn: Any, envelope: Any) -> None:
    return None


async def _runtime_on(service_db, kafka_bootstrap: str, dlq_retention_days: int) -> ServiceRuntime:
    topic = f"ticks.{uuid.uuid4().hex[:12]}"
    await ensure_topics(
        kafka_bootstrap, [TopicDef(topic, partitions=1, retention_ms=dlq_retention_days * DAY_MS)]
    )
    settings = Settings(
        ORCHARD_SERVICE=f"test{uuid.uuid4().hex[:6]}",
        **service_db.service_env(kafka_bootstrap),
        ORCHARD_INBOX_RETENTION_DAYS=40,
    )
    sub = Subscription(name="ticks", topic=topic, payload=Tick, handle=_ignore)
    return ServiceRuntime(settings, ServiceSpec(title="retention check", subscriptions=[sub]))


async def test_a_dlq_kept_longer_than_the_inbox_on_the_broker_refuses_to_consume(service_db, kafka_bootstrap):
    runtime = await _runtime_on(service_db, kafka_bootstrap, dlq_retention_days=90)
    refused: list[StartupRefused] = []
    runtime.on_refusal = refused.append
    await runtime.start()
    try:
        await wait_until(lambda: _refused(runtime), what="the broker check refused")
        assert refused == [runtime.refusal]

        [line] = str(runtime.refusal).splitlines()
        assert line.startswith("ORCHARD_INBOX_RETENTION_DAYS=40 is shorter than the broker's retention.ms=")
        assert f"of {runtime.spec.subscriptions[0].dlq_topic} (90 days)" in line
        assert runtime.broker is not None
        assert not runtime.broker.running
        with pytest.raises(StartupRefused):
            await runtime.check_kafka()
    finally:
        await runtime.stop()


async def test_a_dlq_kept_no_longer_than_the_inbox_lets_the_consumers_start(service_db, kafka_bootstrap):
    runtime = await _runtime_on(service_db, kafka_bootstrap, dlq_retention_days=30)
    await runtime.start()
    try:
        await wait_until(lambda: _ready(runtime), what="consumers started")
        assert runtime.refusal is None
    finally:
        await runtime.stop()


async def _refused(runtime: ServiceRuntime) -> bool:
    return runtime.refusal is not None


async def _ready(runtime: ServiceRuntime) -> bool:
    try:
        await runtime.check_kafka()
    except Exception:
        return False
    return True


SERVICE_ON_TOPIC = """
import sys
from chassis.consumer import Subscription
from chassis.service import ServiceSpec, run_service
from chassis.tests.integration.test_startup_checks import Tick, _ignore

sub = Subscription(name="ticks", topic=sys.argv[1], payload=Tick, handle=_ignore)
run_service(ServiceSpec(title="retention check", subscriptions=[sub]))
"""


async def test_a_service_process_refused_by_the_broker_check_exits_with_one_line(service_db, kafka_bootstrap):
    runtime = await _runtime_on(service_db, kafka_bootstrap, dlq_retention_days=90)
    topic = runtime.spec.subscriptions[0].topic
    env = {
        **os.environ,
        "ORCHARD_SERVICE": "ticker",
        "ORCHARD_HTTP_PORT": str(free_port()),
        "DATABASE_URL": service_db.dsn,
        "ORCHARD_DB_SCHEMA": service_db.schema,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ORCHARD_INBOX_RETENTION_DAYS": "40",
    }

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVICE_ON_TOPIC, topic, env=env, stdout=PIPE, stderr=PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 1
    [line] = [line for line in stderr.decode().splitlines() if "refusing to start" in line]
    assert line.startswith("orchard ticker: refusing to start: ORCHARD_INBOX_RETENTION_DAYS=40 is shorter")
    assert f"of {topic}.dlq (90 days)" in line

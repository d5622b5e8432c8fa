"""A real delivery service (its runtime: consumers, outbox relay, workers, jobs, HTTP app) against the
session's Kafka and Postgres, the SMTP sink and the fake provider, all started per test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from chassis.auth import issue_token
from chassis.sealed_codes import dev_sealer
from chassis.service import ServiceRuntime
from chassis.testing import kafka_answers, produce, read_topic, wait_until
from contracts.delivery import DeliveryRequested
from contracts.envelope import Envelope, EventData
from contracts.orders import FulfilmentStatus, OrderSource, OrderState, OrderStateChanged
from contracts.registry import for_payload
from contracts.values import Channel
from contracts.vouchers import VoucherIssued
from deploy.infra.net import free_port
from deploy.infra.paths import REPO_ROOT
from deploy.infra.process import kill_tree, spawn
from deploy.infra.topics import ensure_kafka_topics
from deploy.runner import registry_topics
from deploy.sinks.testing import RunningProvider, RunningSmtpSink, fake_provider, smtp_sink
from services.delivery.app import build_spec
from services.delivery.sending import DeliveryEngine
from services.delivery.settings import DeliverySettings

_topics_ready: set[str] = set()


@pytest.fixture
async def registry_on_broker(kafka_bootstrap: str) -> str:
    if kafka_bootstrap not in _topics_ready:
        await ensure_kafka_topics(kafka_bootstrap, registry_topics())
        _topics_ready.add(kafka_bootstrap)
    return kafka_bootstrap


class DeliveryProcess:
    """`python -m services.delivery` as a real process on a free port, restartable (for kill -9 tests)."""

    def __init__(self, tmp_path: Path, bootstrap: str, dsn: str, schema: str) -> None:
        self.port = free_port()
        self.log_file = tmp_path / "delivery.log"
        self.env = {
            **os.environ,
            "ORCHARD_SERVICE": "delivery",
            "ORCHARD_HTTP_PORT": str(self.port),
            "DATABASE_URL": dsn,
            "ORCHARD_DB_SCHEMA": schema,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ORCHARD_OUTBOX_POLL_INTERVAL": "0.1",
        }
        self.started: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> DeliverySettings:
        return DeliverySettings(
            **{k: v for k, v in self.env.items() if k.startswith(("ORCHARD_", "DATABASE_"))}
        )

    async def start(self) -> subprocess.Popen[bytes]:
        """Start a process and wait until it answers ready."""
        process = spawn(
            [sys.executable, "-m", "services.delivery"],
            log_file=self.log_file,
            env=self.env,
            cwd=REPO_ROOT,
            tie_to_parent=True,
        )
        self.started.append(process)

        async def ready() -> bool:
            try:
                async with httpx.AsyncClient() as client:
                    return (await client.get(f"{self.url}/health/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(ready, timeout=90, what="the delivery process to be ready")
        return process

    def stop_all(self) -> None:
        for process in self.started:
            kill_tree(process.pid)


@pytest.fixture
def delivery_process(registry_on_broker: str, service_db: Any, tmp_path: Path) -> Iterator[DeliveryProcess]:
    process = DeliveryProcess(tmp_path, registry_on_broker, service_db.dsn, service_db.schema)
    yield process
    process.stop_all()


@dataclass
class DeliveryService:
    """The service under test (or, for a service run as a process, only its database and sinks)."""

    pool: asyncpg.Pool
    bootstrap: str
    smtp: RunningSmtpSink
    provider: RunningProvider
    runtime: ServiceRuntime | None = None
    engine: DeliveryEngine | None = None
    settings: DeliverySettings | None = None
    http: httpx.AsyncClient | None = None

    async def publish(self, data: EventData, *, correlation_id: str | None = None) -> Envelope[Any]:
        spec = for_payload(data)
        env = Envelope.new(event_type=spec.name, producer="test", data=data, correlation_id=correlation_id)
        await produce(self.bootstrap, spec.name, [(spec.key_of(data).encode(), env.to_bytes())])
        return env

    async def delivery(self, order_id: uuid.UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM deliveries WHERE order_id = $1", order_id)

    async def attempts(self, order_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT a.* FROM delivery_attempts a JOIN deliveries d USING (delivery_id)"
            " WHERE d.order_id = $1 ORDER BY a.attempt",
            order_id,
        )

    async def wait_status(self, order_id: uuid.UUID, *statuses: str, timeout: float = 30) -> asyncpg.Record:
        async def reached() -> bool:
            row = await self.delivery(order_id)
            return row is not None and row["status"] in statuses

        await wait_until(reached, timeout=timeout, what=f"delivery of {order_id} to be {statuses}")
        row = await self.delivery(order_id)
        assert row is not None
        return row

    async def join(
        self,
        order_id: uuid.UUID,
        status: str = "sent",
        *,
        voucher: VoucherIssued | None = None,
        **request: Any,
    ) -> asyncpg.Record:
        """Both halves of an order's delivery published (the request with these fields, then this
        voucher or the default one), then its row once it is `status`."""
        await self.publish(request_for(order_id, **request))
        await self.publish(voucher or voucher_for(order_id))
        return await self.wait_status(order_id, status)

    async def events(self, topic: str, order_id: uuid.UUID) -> list[dict[str, Any]]:
        import json

        records = await read_topic(self.bootstrap, topic)
        found = [json.loads(r.value) for r in records if r.key == str(order_id).encode()]
        return sorted(found, key=lambda e: e["data"]["attempt"])

    async def wait_events(self, topic: str, order_id: uuid.UUID, count: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        async def enough() -> bool:
            nonlocal found
            found = await self.events(topic, order_id)
            return len(found) >= count

        await wait_until(enough, timeout=30, interval=0.3, what=f"{count} {topic} events for {order_id}")
        return found

    def token(self, role: str = "admin", sub: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(role=role, sub=sub, settings=self.settings)}"}


ServiceFactory = Callable[..., Awaitable[DeliveryService]]


@pytest.fixture
async def delivery_service(
    registry_on_broker: str, service_db: Any, tmp_path: Path
) -> AsyncIterator[ServiceFactory]:
    """`await delivery_service(**settings_overrides)` starts one service; all stop when the test ends."""
    stack = contextlib.AsyncExitStack()
    started: list[ServiceRuntime] = []

    async def start(**overrides: Any) -> DeliveryService:
        smtp = await stack.enter_async_context(smtp_sink(tmp_path / "mail"))
        provider = await stack.enter_async_context(
            fake_provider(tmp_path / "messages", timeout_delay_s=overrides.pop("provider_delay_s", 3.0))
        )
        values: dict[str, Any] = {
            "ORCHARD_SERVICE": "delivery",
            "DATABASE_URL": service_db.dsn,
            "ORCHARD_DB_SCHEMA": service_db.schema,
            "KAFKA_BOOTSTRAP_SERVERS": registry_on_broker,
            "ORCHARD_DELIVERY_SMTP_PORT": smtp.port,
            "ORCHARD_DELIVERY_SMS_BASE_URL": provider.base_url,
            "ORCHARD_DELIVERY_WHATSAPP_BASE_URL": provider.base_url,
            "ORCHARD_DELIVERY_RETRY_BASE": 0.05,
            "ORCHARD_DELIVERY_RETRY_MAX": 0.2,
            "ORCHARD_DELIVERY_MAX_ATTEMPTS": 3,
            "ORCHARD_DELIVERY_PROVIDER_TIMEOUT": 1.0,
            "ORCHARD_DELIVERY_RECOVERY_INTERVAL": 0.5,
            "ORCHARD_DELIVERY_POLL_INTERVAL": 0.1,
            "ORCHARD_OUTBOX_POLL_INTERVAL": 0.1,
            "ORCHARD_DB_POOL_MAX": 20,
        }
        values.update(overrides)
        settings = DeliverySettings(**values)
        from services.delivery.app import default_senders

        engine = DeliveryEngine(settings, default_senders(settings))
        runtime = ServiceRuntime(settings, build_spec(settings, engine))
        await runtime.start()
        started.append(runtime)
        app = runtime.http_app()
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://delivery")
        )
        await wait_until(kafka_answers(runtime), timeout=60, what="the consumers to join their groups")
        assert runtime.pool is not None
        return DeliveryService(
            runtime.pool, registry_on_broker, smtp, provider, runtime, engine, settings, http
        )

    try:
        yield start
    finally:
        for runtime in reversed(started):
            await runtime.stop()
        await stack.aclose()


def _order(order_id: uuid.UUID, campaign_id: str) -> dict[str, Any]:
    """The order fields every test event about an order carries: one member, a booking from the id."""
    return {
        "order_id": order_id,
        "booking_id": f"BK-{order_id.hex[:10].upper()}",
        "member_id": "m-1",
        "campaign_id": campaign_id,
    }


def request_for(
    order_id: uuid.UUID,
    *,
    channel: Channel = Channel.EMAIL,
    email: str | None = "ann@example.com",
    phone: str | None = None,
    campaign_id: str = "camp-1",
    locale: str = "en",
) -> DeliveryRequested:
    return DeliveryRequested(
        **_order(order_id, campaign_id),
        channel=channel,
        name="Ann",
        email=email,
        phone=phone,
        locale=locale,
    )


def voucher_for(
    order_id: uuid.UUID, *, code: str = "ORCH-7F3K-9Q2M", campaign_id: str = "camp-1"
) -> VoucherIssued:
    code_id = uuid.uuid4()
    return VoucherIssued(
        order_id=order_id,
        campaign_id=campaign_id,
        code_id=code_id,
        sealed_code=dev_sealer().seal(code, code_id),
        masked_code="****-****-" + code[-4:],
        face_value=Decimal("25.00"),
        currency="EUR",
        expires_at=datetime.now(UTC) + timedelta(days=90),
    )


def state_changed(
    order_id: uuid.UUID, state: OrderState, *, campaign_id: str = "camp-1", reason: str | None = None
) -> OrderStateChanged:
    return OrderStateChanged(
        **_order(order_id, campaign_id),
        source=OrderSource.IPA,
        state=state,
        previous_state=OrderState.PENDING if state is not OrderState.PENDING else None,
        fulfilment_status=FulfilmentStatus.DELIVERING if state is OrderState.PENDING else None,
        reason=reason,
    )


async def settle(seconds: float = 1.0) -> None:
    """Give workers a chance to do something they must not do (used only to assert an absence)."""
    await asyncio.sleep(seconds)

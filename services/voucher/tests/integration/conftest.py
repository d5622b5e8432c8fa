"""A real voucher runtime (consumers, relay, jobs, HTTP) on the session's broker and a fresh schema."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from chassis.auth import issue_token
from chassis.db import apply_migrations, create_pool
from chassis.service import ServiceRuntime
from chassis.testing import produce, read_topic, wait_until
from contracts.envelope import Envelope
from contracts.orders import FulfilmentStatus, OrderSource, OrderState, OrderStateChanged
from contracts.registry import TOPICS
from contracts.topics import Topics
from deploy.infra.topics import ensure_topics
from services.voucher.service import MIGRATIONS, build_spec
from services.voucher.settings import VoucherSettings


@dataclass
class Voucher:
    runtimes: list[ServiceRuntime]
    http: httpx.AsyncClient
    bootstrap: str

    @property
    def pool(self) -> Any:
        return self.runtimes[0].pool

    async def create_campaign(self, **fields: Any) -> str:
        body = {
            "name": "Spring thanks",
            "brand": "Books & Co",
            "face_value": "25.00",
            "currency": "EUR",
            "partner_ids": ["partner-1"],
        } | fields
        response = await self.http.post("/v1/campaigns", json=body, headers=auth("admin"))
        assert response.status_code == 201, response.text
        return str(response.json()["campaign_id"])

    async def generate(self, campaign_id: str, count: int, **fields: Any) -> dict[str, Any]:
        response = await self.http.post(
            f"/v1/campaigns/{campaign_id}/codes/generate", json={"count": count} | fields, headers=auth("ops")
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def import_csv(self, campaign_id: str, csv: bytes) -> httpx.Response:
        """Import a partner's CSV sent as the request body."""
        return await self.http.post(
            f"/v1/campaigns/{campaign_id}/codes/import",
            content=csv,
            headers=auth("ops") | {"content-type": "text/csv"},
        )

    async def issuance_count(self, campaign_id: str) -> int:
        return int(
            await self.pool.fetchval("SELECT count(*) FROM issuances WHERE campaign_id = $1", campaign_id)
        )

    async def wait_for(self, sql: str, *args: Any, expected: Any, what: str, timeout: float = 60) -> None:
        async def reached() -> bool:
            return bool(await self.pool.fetchval(sql, *args) == expected)

        await wait_until(reached, timeout=timeout, what=what)

    async def events(self, topic: str, **match: Any) -> list[dict[str, Any]]:
        """Published events of this run's ids on a topic (the topic is shared by the whole session)."""
        found = []
        for record in await read_topic(self.bootstrap, topic):
            envelope = json.loads(record.value)
            if all(str(envelope["data"].get(k)) == str(v) for k, v in match.items()):
                found.append(envelope)
        return found


def auth(role: str, sub: str = "tester") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(role=role, sub=sub)}"}


def order_event(
    order_id: uuid.UUID,
    campaign_id: str,
    *,
    state: OrderState = OrderState.PENDING,
    fulfilment: FulfilmentStatus | None = FulfilmentStatus.AWAITING_VOUCHER,
    amount: Decimal | None = None,
    reason: str | None = None,
    test: bool = False,
    source: OrderSource = OrderSource.API,
    booking_id: str | None = None,
    member_id: str | None = None,
) -> Envelope[OrderStateChanged]:
    """An order's state change as the order service publishes it (booking and member derived from the
    order id unless given)."""
    return Envelope.new(
        event_type=Topics.ORDER_STATE_CHANGED,
        producer="order",
        data=OrderStateChanged(
            order_id=order_id,
            booking_id=booking_id or f"BK-{order_id.hex[:10].upper()}",
            member_id=member_id or f"member-{order_id.hex[:6]}",
            campaign_id=campaign_id,
            source=source,
            state=state,
            fulfilment_status=fulfilment,
            amount=amount,
            reason=reason,
            test=test,
        ),
    )


async def publish_orders(bootstrap: str, envelopes: list[Envelope[Any]]) -> None:
    await produce(
        bootstrap,
        Topics.ORDER_STATE_CHANGED,
        [(str(e.data.order_id).encode(), e.to_bytes()) for e in envelopes],
    )


@pytest.fixture
async def pool(service_db: Any) -> AsyncIterator[Any]:
    """A migrated voucher schema, for tests that call the service's functions directly."""
    pool = await create_pool(service_db.dsn, schema=service_db.schema, min_size=4, max_size=8)
    await apply_migrations(pool, service_dir=MIGRATIONS)
    yield pool
    await pool.close()


@pytest.fixture
async def start_voucher(
    service_db: Any, kafka_bootstrap: str
) -> AsyncIterator[Callable[..., Awaitable[Voucher]]]:
    await ensure_topics(kafka_bootstrap, TOPICS)
    group = f"vt{uuid.uuid4().hex[:8]}"
    started: list[ServiceRuntime] = []
    clients: list[httpx.AsyncClient] = []

    async def start(replicas: int = 1, **env: Any) -> Voucher:
        runtimes = []
        for _ in range(replicas):
            settings = VoucherSettings(
                ORCHARD_SERVICE=group,
                DATABASE_URL=service_db.dsn,
                ORCHARD_DB_SCHEMA=service_db.schema,
                KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                **{
                    "ORCHARD_OUTBOX_POLL_INTERVAL": 0.2,
                    "ORCHARD_VOUCHER_HOLD_INTERVAL": 0.5,
                    "ORCHARD_SHUTDOWN_GRACE": 4,
                    **env,
                },
            )
            runtime = ServiceRuntime(settings, build_spec(settings))
            await runtime.start()
            started.append(runtime)
            runtimes.append(runtime)
        app = runtimes[0].http_app()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://voucher")
        clients.append(client)
        voucher = Voucher(runtimes, client, kafka_bootstrap)

        async def consuming() -> bool:
            return all(r._broker_task is not None and r._broker_task.done() for r in runtimes)

        await wait_until(consuming, what="consumers connected")
        return voucher

    yield start
    for client in clients:
        await client.aclose()
    for runtime in reversed(started):
        await runtime.stop()

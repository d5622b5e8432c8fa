"""A real support service (runtime, consumers, relay, SLA job, HTTP app) on the session's broker and a
fresh schema, with a clock the test moves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from chassis.auth import issue_token
from chassis.service import ServiceRuntime
from chassis.testing import FakeClock, produce, read_topic
from contracts.envelope import Envelope, EventData
from contracts.registry import consumed_by, produced_by
from deploy.infra.topics import ensure_topics
from deploy.testing import ServiceDb
from services.support.__main__ import build_spec
from services.support.context import SupportContext
from services.support.settings import SupportSettings


@dataclass
class Support:
    client: httpx.AsyncClient
    ctx: SupportContext
    clock: FakeClock
    settings: SupportSettings
    bootstrap: str
    db: ServiceDb
    pool: asyncpg.Pool

    def token(self, role: str, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(role=role, sub=sub, settings=self.settings)}"}

    async def publish(
        self, topic: str, key: str, data: EventData, *, producer: str = "test"
    ) -> Envelope[Any]:
        envelope = Envelope.new(event_type=topic, producer=producer, data=data)
        await produce(self.bootstrap, topic, [(key.encode(), envelope.to_bytes())])
        return envelope

    async def open_ticket(self, member: str, body: dict[str, Any]) -> dict[str, Any]:
        """A member opens a ticket; the ticket as answered."""
        response = await self.client.post("/v1/tickets", json=body, headers=self.token("member", member))
        assert response.status_code == 201, response.text
        opened: dict[str, Any] = response.json()
        return opened

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.db.dsn, server_settings={"search_path": self.db.schema})
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def events(self, topic: str, **match: str) -> list[dict[str, Any]]:
        """Envelopes on a topic whose data carries every `match` field (other tests share the broker)."""
        found = []
        for record in await read_topic(self.bootstrap, topic):
            document = Envelope.decode(record.value, _Any).to_json_dict()
            if all(str(document["data"].get(k)) == v for k, v in match.items()):
                found.append(document)
        return found


class _Any(EventData):
    model_config = {"extra": "allow", "frozen": True}


START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday at nine


@pytest.fixture
def support_env() -> dict[str, object]:
    """Extra settings a test module can override."""
    return {}


@pytest.fixture
async def support(
    kafka_bootstrap: str, service_db: ServiceDb, support_env: dict[str, object]
) -> AsyncIterator[Support]:
    await ensure_topics(kafka_bootstrap, [*consumed_by("support"), *produced_by("support")])
    settings = SupportSettings(
        **{
            "ORCHARD_SERVICE": f"support-{uuid.uuid4().hex[:8]}",
            "ORCHARD_DB_SCHEMA": service_db.schema,
            "DATABASE_URL": service_db.dsn,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "ORCHARD_OUTBOX_POLL_INTERVAL": 0.1,
            "ORCHARD_SUPPORT_SLA_CHECK_INTERVAL": 0.2,
            "ORCHARD_SHUTDOWN_GRACE": 5,
            **support_env,
        }
    )
    clock = FakeClock(START)
    spec, ctx = build_spec(settings, clock)
    runtime = ServiceRuntime(settings, spec)
    app = runtime.http_app()
    await runtime.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://support") as client:
            assert runtime.pool is not None
            yield Support(client, ctx, clock, settings, kafka_bootstrap, service_db, runtime.pool)
    finally:
        await runtime.stop()

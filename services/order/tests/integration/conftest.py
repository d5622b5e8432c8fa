"""A real order service (runtime, consumers, relay, batch worker, HTTP app) on the session's broker and a
fresh schema, plus helpers to play the voucher and delivery services on the broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from chassis.auth import issue_token
from chassis.http import DownloadTimedOut
from chassis.service import ServiceRuntime
from chassis.testing import kafka_answers, private_group_consumer, produce, read_topic, wait_until
from contracts.envelope import Envelope, EventData
from contracts.registry import TOPICS
from contracts.topics import Topics
from contracts.values import Channel, RewardType
from contracts.vouchers import CampaignChanged, CampaignStatus
from deploy.infra.topics import ensure_topics
from deploy.testing import ServiceDb
from services.order.app import build_spec
from services.order.context import OrderContext
from services.order.settings import OrderSettings

_topics_ready: list[bool] = []


@pytest.fixture
async def registry_topics(kafka_bootstrap: str) -> None:
    if not _topics_ready:
        await ensure_topics(kafka_bootstrap, TOPICS)
        _topics_ready.append(True)


@dataclass
class OrderService:
    runtime: ServiceRuntime
    http: httpx.AsyncClient
    settings: OrderSettings
    bootstrap: str
    ctx: OrderContext
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str = "admin") -> dict[str, str]:
        if role not in self.tokens:
            self.tokens[role] = issue_token(role=role, sub=f"{role}-tester", settings=self.settings)
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    @property
    def pool(self) -> Any:
        return self.runtime.pool

    async def publish(
        self, topic: str, key: str, data: EventData, *, producer: str = "tester"
    ) -> Envelope[Any]:
        envelope = Envelope.new(event_type=topic, producer=producer, data=data)
        await produce(self.bootstrap, topic, [(key.encode(), envelope.to_bytes())])
        return envelope

    async def publish_raw(self, topic: str, key: str, envelope: Envelope[Any]) -> None:
        await produce(self.bootstrap, topic, [(key.encode(), envelope.to_bytes())])

    async def campaign(
        self,
        *,
        reward_type: RewardType = RewardType.VOUCHER,
        currency: str | None = "EUR",
        status: CampaignStatus = CampaignStatus.ACTIVE,
        per_record_limit: str | None = "500",
        default_channel: Channel = Channel.EMAIL,
        version: int = 1,
        campaign_id: str | None = None,
        denominations: tuple[str, ...] = (),
    ) -> str:
        campaign_id = campaign_id or f"camp-{uuid.uuid4().hex[:10]}"
        voucher = reward_type is RewardType.VOUCHER
        await self.publish(
            Topics.CAMPAIGN_CHANGED,
            campaign_id,
            CampaignChanged(
                campaign_id=campaign_id,
                version=version,
                name=f"Campaign {campaign_id}",
                reward_type=reward_type,
                face_value=Decimal("25") if voucher else None,
                currency=currency if voucher else None,
                status=status,
                per_record_limit=Decimal(per_record_limit) if per_record_limit else None,
                default_channel=default_channel,
                denominations=tuple(Decimal(d) for d in denominations),
            ),
            producer="voucher",
        )
        await wait_until(
            lambda: self._campaign_version(campaign_id, version), what=f"campaign {campaign_id} v{version}"
        )
        return campaign_id

    async def _campaign_version(self, campaign_id: str, version: int) -> bool:
        found = await self.pool.fetchval("SELECT version FROM campaigns WHERE campaign_id = $1", campaign_id)
        return found == version

    async def upload_json(self, records: list[dict[str, Any]], mode: str = "accept_valid") -> str:
        response = await self.http.post(
            "/v1/ipa/batches", params={"mode": mode}, json={"records": records}, headers=self.auth()
        )
        assert response.status_code == 202, response.text
        return str(response.json()["batch_id"])

    async def upload_csv(self, text: str | bytes, mode: str = "accept_valid") -> httpx.Response:
        body = text.encode() if isinstance(text, str) else text
        return await self.http.post(
            "/v1/ipa/batches",
            params={"mode": mode},
            content=body,
            headers={**self.auth(), "Content-Type": "text/csv"},
        )

    async def finished_batch(self, batch_id: str) -> dict[str, Any]:
        result: dict[str, Any] = {}

        async def done() -> bool:
            response = await self.http.get(f"/v1/ipa/batches/{batch_id}", headers=self.auth())
            assert response.status_code == 200, response.text
            result.update(response.json())
            return result["status"] in ("completed", "rejected", "failed")

        await wait_until(done, what=f"batch {batch_id} finished")
        return result

    async def order(self, ref: str) -> dict[str, Any]:
        response = await self.http.get(f"/v1/orders/{ref}", headers=self.auth("support_agent"))
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def order_of(self, external_ref: str) -> dict[str, Any]:
        order_id = None

        async def exists() -> bool:
            nonlocal order_id
            order_id = await self.pool.fetchval(
                "SELECT order_id FROM orders WHERE external_ref = $1", external_ref
            )
            return order_id is not None

        await wait_until(exists, what=f"order for {external_ref}")
        return await self.order(str(order_id))

    async def wait_for_order(self, order_id: str, **expected: Any) -> dict[str, Any]:
        latest: dict[str, Any] = {}

        async def matches() -> bool:
            latest.update(await self.order(order_id))
            return all(latest[k] == v for k, v in expected.items())

        await wait_until(matches, what=f"order {order_id} to have {expected}")
        return latest

    async def assert_download_cut_off(self, path: str, *, table: str, query_like: str, role: str) -> None:
        """`GET path`, whose query waits on `table` locked, is cut off at the download timeout, and
        its query (`query_like` in pg_stat_activity) then ends."""
        async with self.pool.acquire() as blocker, blocker.transaction():
            await blocker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(DownloadTimedOut):
                await self.http.get(path, headers=self.auth(role))

            async def query_gone() -> bool:
                waiting = await blocker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                    query_like,
                )
                return bool(waiting == 0)

            await wait_until(query_gone, timeout=30, what=f"the query of {path} ended")

    async def published(self, topic: str, **match: Any) -> list[dict[str, Any]]:
        """Events on a topic whose data has all the given values (our relay publishes them)."""
        records = await read_topic(self.bootstrap, topic)
        found = []
        for record in records:
            envelope = Envelope.decode(record.value, _Any)
            data = envelope.data.model_dump()
            if all(str(data.get(k)) == str(v) for k, v in match.items()):
                found.append({"envelope": envelope, **data})
        return found

    async def wait_published(self, topic: str, count: int, **match: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        async def enough() -> bool:
            found[:] = await self.published(topic, **match)
            return len(found) >= count

        await wait_until(enough, timeout=30, interval=0.5, what=f"{count} event(s) on {topic} with {match}")
        return found


class _Any(EventData):
    model_config = {"extra": "allow", "frozen": True}


def voucher_record(campaign_id: str, **overrides: Any) -> dict[str, Any]:
    record = {
        "external_ref": f"ref-{uuid.uuid4().hex[:12]}",
        "member_id": f"m-{uuid.uuid4().hex[:8]}",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "campaign_id": campaign_id,
        "reward_type": "voucher",
        "amount": "25.00",
        "currency": "EUR",
        "reason": "Q3 award",
    }
    record.update(overrides)
    return {k: v for k, v in record.items() if v is not None}


@pytest.fixture
async def order_service(
    registry_topics: None, kafka_bootstrap: str, service_db: ServiceDb, request: pytest.FixtureRequest
) -> AsyncIterator[OrderService]:
    overrides = getattr(request, "param", {})
    settings = OrderSettings(
        ORCHARD_SERVICE="order",
        DATABASE_URL=service_db.dsn,
        ORCHARD_DB_SCHEMA=service_db.schema,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        ORCHARD_OUTBOX_POLL_INTERVAL=0.2,
        ORCHARD_ORDER_IPA_POLL_S=0.2,
        ORCHARD_SHUTDOWN_GRACE=5,
        **overrides,
    )
    spec, ctx = build_spec(settings)
    spec.consumer_class = private_group_consumer(f"test-{uuid.uuid4().hex[:8]}")
    runtime = ServiceRuntime(settings, spec)
    await runtime.start()
    app = runtime.http_app()
    try:
        await wait_until(kafka_answers(runtime), timeout=60, what="consumers connected")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://order") as http:
            yield OrderService(runtime, http, settings, kafka_bootstrap, ctx)
    finally:
        await runtime.stop()

"""The ops API of a running service against the real Kafka and Postgres: consumer lag, the outbox,
dead letters and their replay, and who may see them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from chassis.audit_api import audit_router
from chassis.auth import issue_token
from chassis.consumer import Subscription
from chassis.outbox import add_event
from chassis.service import ServiceRuntime, ServiceSpec
from chassis.settings import Settings
from chassis.testing import audit_trail, kafka_answers, produce, wait_until
from contracts.envelope import Envelope, EventData
from deploy.testing import ServiceDb


class Tick(EventData):
    n: int


@dataclass
class Ticks:
    """Handles ticks: holds them while `held`, refuses those in `poisoned`, remembers the rest."""

    held: asyncio.Event = field(default_factory=asyncio.Event)
    poisoned: set[int] = field(default_factory=set)
    seen: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.held.set()

    async def __call__(self, conn: Any, envelope: Envelope[Any]) -> None:
        await self.held.wait()
        if envelope.data.n in self.poisoned:
            raise ValueError(f"tick {envelope.data.n} violates an invariant")
        self.seen.append(envelope.data.n)


@dataclass
class Service:
    runtime: ServiceRuntime
    http: httpx.AsyncClient
    topic: str
    ticks: Ticks
    settings: Settings

    @property
    def group(self) -> str:
        return f"orchard.{self.settings.service_name}.ticks"

    def auth(self, role: str = "ops") -> dict[str, str]:
        token = issue_token(role=role, sub=f"{role}-1", settings=self.settings)
        return {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = await self.http.get(path, params=params, headers=self.auth())
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.post(path, json=body, headers=self.auth())
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def send(self, *ns: int) -> list[Envelope[Tick]]:
        envelopes = [Envelope.new(event_type=self.topic, producer="test", data=Tick(n=n)) for n in ns]
        await produce(
            self.runtime.settings.kafka_bootstrap_servers,
            self.topic,
            [(str(e.data.n).encode(), e.to_bytes()) for e in envelopes],
        )
        return envelopes


@pytest.fixture
async def service(
    service_db: ServiceDb, kafka_bootstrap: str, new_topic: Callable[..., Awaitable[str]]
) -> AsyncIterator[Service]:
    topic = await new_topic("ticks", partitions=2)
    settings = Settings(
        ORCHARD_SERVICE=f"ops{uuid.uuid4().hex[:6]}",
        **service_db.service_env(kafka_bootstrap),
        ORCHARD_CONSUMER_MAX_ATTEMPTS=2,
    )
    ticks = Ticks()
    sub = Subscription(name="ticks", topic=topic, payload=Tick, handle=ticks)
    runtime = ServiceRuntime(
        settings, ServiceSpec(title="ops", subscriptions=[sub], routers=[audit_router()])
    )
    await runtime.start()
    try:
        await wait_until(kafka_answers(runtime), what="the consumers joined")
        transport = httpx.ASGITransport(app=runtime.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Service(runtime, http, topic, ticks, settings)
    finally:
        ticks.held.set()
        await runtime.stop()


async def _lag(service: Service) -> int:
    report = await service.get("/v1/ops/consumers")
    [group] = report["groups"]
    assert group["group"] == service.group
    assert group["topic"] == service.topic
    assert len(group["partitions"]) == 2
    return int(group["lag"])


async def test_lag_shows_the_messages_a_group_has_not_handled_and_returns_to_zero(service: Service) -> None:
    service.ticks.held.clear()
    await service.send(1, 2, 3)

    async def three_behind() -> bool:
        return await _lag(service) == 3

    await wait_until(three_behind, what="a lag of the three held ticks")
    service.ticks.held.set()

    async def caught_up() -> bool:
        return await _lag(service) == 0

    await wait_until(caught_up, what="the lag back to zero")
    assert sorted(service.ticks.seen) == [1, 2, 3]


async def test_an_event_the_relay_published_in_a_transaction_leaves_no_lag_once_handled(
    service: Service,
) -> None:
    """The relay's transaction markers take offsets no consumer receives: they are not lag."""
    assert service.runtime.pool is not None
    async with service.runtime.pool.acquire() as conn, conn.transaction():
        for n in (1, 2):
            envelope = Envelope.new(event_type=service.topic, producer="test", data=Tick(n=n))
            await add_event(conn, envelope, key=str(n))

    async def handled_and_caught_up() -> bool:
        return sorted(service.ticks.seen) == [1, 2] and await _lag(service) == 0

    await wait_until(handled_and_caught_up, what="the published ticks handled and no lag left")


async def test_a_poison_message_is_listed_and_replayed_to_its_group_once_cured(service: Service) -> None:
    service.ticks.poisoned.add(7)
    [poison] = await service.send(7)

    async def listed() -> bool:
        return bool((await service.get("/v1/ops/dlq"))["total"] == 1)

    await wait_until(listed, what="the poison message in the DLQ list")
    [letter] = (await service.get("/v1/ops/dlq", group=service.group))["items"]
    assert letter["event_id"] == str(poison.event_id)
    assert letter["group"] == service.group
    assert letter["subscription"] == "ticks"
    assert letter["original_topic"] == service.topic
    assert letter["key"] == "7"
    assert letter["error_code"] == "handler_failed"
    assert "violates an invariant" in letter["error"]
    assert "value" not in letter
    assert letter["replayed_at"] is None
    assert "payload" not in letter

    service.ticks.poisoned.clear()
    dry = await service.post("/v1/ops/dlq/replay", {"group": service.group, "dry_run": True})
    assert dry["dry_run"]
    assert dry["replayed"] == 1
    assert [d["event_id"] for d in dry["letters"]] == [str(poison.event_id)]

    done = await service.post("/v1/ops/dlq/replay", {"group": service.group})
    assert done["replayed"] == 1
    assert not done["dry_run"]

    async def handled() -> bool:
        return service.ticks.seen == [7]

    await wait_until(handled, what="the replayed tick handled")
    again = await service.post("/v1/ops/dlq/replay", {"group": service.group})
    assert again["replayed"] == 0  # replay-all remembers how far it got, as the CLI's does
    [entry] = await audit_trail(service.http, service.auth("admin"), action="dlq.replayed")
    assert entry["actor"] == "ops-1"
    assert entry["subject_id"] == service.group
    assert entry["details"]["event_ids"] == [str(poison.event_id)]
    [replayed] = (await service.get("/v1/ops/dlq"))["items"]
    assert replayed["replayed_by"] == "ops-1"
    assert replayed["replayed_at"] == entry["occurred_at"]


async def test_a_replay_with_a_limit_leaves_the_rest_for_the_next(service: Service) -> None:
    service.ticks.poisoned.update({1, 2, 3})
    await service.send(1, 2, 3)

    async def listed() -> bool:
        return bool((await service.get("/v1/ops/dlq"))["total"] == 3)

    await wait_until(listed, what="three dead letters")
    page = await service.get("/v1/ops/dlq", limit=2)
    assert len(page["items"]) == 2
    assert page["next_offset"] == 2
    service.ticks.poisoned.clear()

    first = await service.post("/v1/ops/dlq/replay", {"group": service.group, "limit": 2})
    rest = await service.post("/v1/ops/dlq/replay", {"group": service.group})
    assert (first["replayed"], rest["replayed"]) == (2, 1)

    async def all_handled() -> bool:
        return sorted(service.ticks.seen) == [1, 2, 3]

    await wait_until(all_handled, what="the three replayed ticks handled")


async def test_a_parked_outbox_event_is_shown_and_retried(service: Service) -> None:
    assert service.runtime.pool is not None
    envelope = Envelope.new(event_type=service.topic, producer="test", data=Tick(n=5))
    async with service.runtime.pool.acquire() as conn, conn.transaction():
        await add_event(conn, envelope, key="5")
        row_id = await conn.fetchval(
            "UPDATE outbox SET parked_at = now(), publish_attempts = 5, last_error = 'refused'"
            " WHERE event_id = $1 RETURNING id",
            envelope.event_id,
        )

    status = await service.get("/v1/ops/outbox")
    assert (status["parked"], status["unpublished"]) == (1, 0)
    [parked] = status["parked_events"]
    assert parked["id"] == row_id
    assert parked["topic"] == service.topic
    assert parked["last_error"] == "refused"
    assert "payload" not in parked

    assert (await service.post("/v1/ops/outbox/retry", {"ids": [row_id]}))["retried"] == [row_id]

    async def published_and_handled() -> bool:
        status = await service.get("/v1/ops/outbox")
        return status["parked"] == 0 and status["unpublished"] == 0 and service.ticks.seen == [5]

    await wait_until(published_and_handled, what="the retried event published and handled")
    status = await service.get("/v1/ops/outbox")
    assert status["relay"]["this_process_leads"]
    assert status["relay"]["holder"]
    [entry] = await audit_trail(service.http, service.auth("admin"), action="outbox.retried")
    assert entry["actor"] == "ops-1"
    assert entry["details"]["ids"] == [row_id]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/ops/consumers"),
        ("GET", "/v1/ops/outbox"),
        ("GET", "/v1/ops/dlq"),
        ("POST", "/v1/ops/dlq/replay"),
        ("POST", "/v1/ops/outbox/retry"),
    ],
)
async def test_only_ops_and_admins_may_use_the_ops_api(service: Service, method: str, path: str) -> None:
    body = {"group": service.group, "dry_run": True} if path.endswith("replay") else {}
    for role in ("finance", "support_agent", "auditor", "member"):
        refused = await service.http.request(method, path, json=body, headers=service.auth(role))
        assert refused.status_code == 403, (role, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await service.http.request(method, path, json=body)).status_code == 401
    allowed = await service.http.request(method, path, json=body, headers=service.auth("admin"))
    assert allowed.status_code == 200, allowed.text


async def test_a_group_of_another_service_is_refused_naming_the_field(service: Service) -> None:
    other = "orchard.order.orders"
    replay = await service.http.post("/v1/ops/dlq/replay", json={"group": other}, headers=service.auth())
    listing = await service.http.get("/v1/ops/dlq", params={"group": other}, headers=service.auth())
    for response, where in ((replay, "body.group"), (listing, "query.group")):
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == where
    bad = await service.http.post(
        "/v1/ops/dlq/replay", json={"group": service.group, "limit": 0}, headers=service.auth()
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.limit"


async def test_a_letter_that_fails_again_after_its_replay_is_listed_anew_and_unreplayed(
    service: Service,
) -> None:
    service.ticks.poisoned.add(8)
    [poison] = await service.send(8)

    async def dead_lettered(times: int) -> bool:
        return bool((await service.get("/v1/ops/dlq"))["total"] == times)

    await wait_until(lambda: dead_lettered(1), what="the poison message dead-lettered")
    await service.post("/v1/ops/dlq/replay", {"group": service.group, "event_ids": [str(poison.event_id)]})
    await wait_until(lambda: dead_lettered(2), what="the replayed message dead-lettered again")

    newest, oldest = (await service.get("/v1/ops/dlq"))["items"]
    assert newest["event_id"] == oldest["event_id"] == str(poison.event_id)
    assert newest["replayed_at"] is None
    assert oldest["replayed_by"] == "ops-1"

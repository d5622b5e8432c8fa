"""A real redemption service (runtime in this process) on the session's broker and a fresh schema,
plus a stand-in for the wallet and the order service that answers on the real topics."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from chassis.auth import issue_token
from chassis.service import ServiceRuntime
from chassis.testing import kafka_answers, produce, read_topic, wait_until
from contracts.envelope import Envelope, EventData
from contracts.orders import FulfilmentStatus, OrderSource, OrderState, OrderStateChanged
from contracts.registry import TOPICS
from contracts.topics import Topics
from contracts.wallet import (
    Direction,
    EntryType,
    WalletDebitRejected,
    WalletReference,
    WalletTransactionRecorded,
)
from deploy.infra.topics import ensure_topics
from services.redemption.app import build_spec
from services.redemption.settings import RedemptionSettings


def service_settings(db: Any, bootstrap: str, **extra: Any) -> RedemptionSettings:
    values = {
        "ORCHARD_SERVICE": f"redemption_{uuid.uuid4().hex[:8]}",
        "ORCHARD_DB_SCHEMA": db.schema,
        "DATABASE_URL": db.dsn,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ORCHARD_OUTBOX_POLL_INTERVAL": 0.2,
        "ORCHARD_SHUTDOWN_GRACE": 5,
        **extra,
    }
    return RedemptionSettings(**values)


@dataclass
class RunningService:
    runtime: ServiceRuntime
    client: httpx.AsyncClient
    bootstrap: str

    def auth(self, role: str, sub: str) -> dict[str, str]:
        token = issue_token(role=role, sub=sub, settings=self.runtime.settings)
        return {"Authorization": f"Bearer {token}"}

    @property
    def pool(self) -> Any:
        return self.runtime.pool


@pytest.fixture(scope="session")
async def registry_topics(kafka_bootstrap: str) -> None:
    await ensure_topics(kafka_bootstrap, TOPICS)


@pytest.fixture
async def service(
    service_db: Any, kafka_bootstrap: str, registry_topics: None
) -> AsyncIterator[RunningService]:
    settings = service_settings(service_db, kafka_bootstrap, ORCHARD_REDEMPTION_SAGA_REDRIVE_INTERVAL=0.5)
    runtime = ServiceRuntime(settings, build_spec(settings))
    await runtime.start()
    app = runtime.http_app()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://redemption"
        ) as client:
            await wait_until(kafka_answers(runtime), timeout=60, what="consumers connected")
            yield RunningService(runtime, client, kafka_bootstrap)
    finally:
        await runtime.stop()


# The wallet and the order service, played by the test ---------------------------------------------


async def requests_for(bootstrap: str, topic: str, redemption_id: str) -> list[dict[str, Any]]:
    """Every request the service published on `topic` about one redemption (envelopes as dicts)."""
    found = []
    for record in await read_topic(bootstrap, topic):
        envelope = json.loads(record.value)
        data = envelope["data"]
        rid = data.get("redemption_id") or (data.get("reference") or {}).get("redemption_id")
        if rid == redemption_id:
            found.append(envelope)
    return found


async def publish(bootstrap: str, topic: str, key: str, data: EventData, producer: str) -> None:
    envelope = Envelope.new(event_type=topic, producer=producer, data=data)
    await produce(bootstrap, topic, [(key.encode(), envelope.to_bytes())])


async def wallet_records(
    bootstrap: str, request: dict[str, Any], *, entry_id: uuid.UUID | None = None, balance_after: int = 1000
) -> uuid.UUID:
    data = request["data"]
    entry_type = EntryType(data["entry_type"])
    entry = entry_id or uuid.uuid4()
    direction = Direction.DEBIT if entry_type is EntryType.REDEMPTION else Direction.CREDIT
    await publish(
        bootstrap,
        Topics.WALLET_TRANSACTION_RECORDED,
        data["member_id"],
        WalletTransactionRecorded(
            entry_id=entry,
            member_id=data["member_id"],
            entry_type=entry_type,
            direction=direction,
            amount=int(data["amount"]),
            balance_after=balance_after,
            idempotency_key=data["idempotency_key"],
            reference=WalletReference.model_validate(data["reference"], context={"tolerant": True}),
        ),
        "wallet",
    )
    return entry


async def wallet_rejects(
    bootstrap: str, request: dict[str, Any], reason: str = "insufficient_points"
) -> None:
    data = request["data"]
    await publish(
        bootstrap,
        Topics.WALLET_DEBIT_REJECTED,
        data["member_id"],
        WalletDebitRejected(
            member_id=data["member_id"],
            amount=int(data["amount"]),
            idempotency_key=data["idempotency_key"],
            reason=reason,
        ),
        "wallet",
    )


async def order_changes(
    bootstrap: str,
    create_request: dict[str, Any],
    order_id: uuid.UUID,
    state: OrderState,
    *,
    previous: OrderState | None = None,
    reason: str | None = None,
) -> None:
    data = create_request["data"]
    await publish(
        bootstrap,
        Topics.ORDER_STATE_CHANGED,
        str(order_id),
        OrderStateChanged(
            order_id=order_id,
            booking_id=f"BK-{order_id.hex[:10].upper()}",
            member_id=data["member_id"],
            campaign_id=data["campaign_id"],
            external_ref=data["idempotency_key"],
            source=OrderSource.STOREFRONT,
            state=state,
            previous_state=previous,
            fulfilment_status=FulfilmentStatus.AWAITING_VOUCHER if state is OrderState.PENDING else None,
            reason=reason,
            redemption_id=uuid.UUID(data["redemption_id"]),
            amount=Decimal(data["amount"]) if data.get("amount") else None,
        ),
        "order",
    )


async def wait_for_requests(
    bootstrap: str, topic: str, redemption_id: str, count: int = 1
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        found[:] = await requests_for(bootstrap, topic, redemption_id)
        return len(found) >= count

    await wait_until(enough, timeout=60, interval=0.3, what=f"{count} request(s) on {topic}")
    return found


def offer_body(**overrides: Any) -> dict[str, Any]:
    """A new PIN offer, open since yesterday for 30 days, with `overrides`."""
    now = datetime.now(UTC)
    return {
        "title": "Free dessert",
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_until": (now + timedelta(days=30)).isoformat(),
        "validation_method": "pin",
        **overrides,
    }


async def create_offer(service: RunningService, partner: str, **overrides: Any) -> str:
    """`offer_body(**overrides)` created as `partner`'s offer; its id."""
    body = offer_body(**overrides)
    response = await service.client.post("/v1/offers", json=body, headers=service.auth("partner", partner))
    assert response.status_code == 201, response.text
    return str(response.json()["offer_id"])


PIN = "480317"


async def set_pin(service: RunningService, member: str, pin: str = PIN) -> httpx.Response:
    """The member sets their PIN: 204 when it is accepted."""
    return await service.client.put(
        f"/v1/members/{member}/pin", json={"pin": pin}, headers=service.auth("member", member)
    )


async def pinned_member(service: RunningService) -> str:
    """A new member whose PIN is `PIN`."""
    member = f"m-{uuid.uuid4().hex[:6]}"
    response = await set_pin(service, member)
    assert response.status_code == 204, response.text
    return member


async def redeem_offer(service: RunningService, partner: str, offer: str, **body: Any) -> httpx.Response:
    """`partner` records a redemption of `offer`, in store unless `body` says otherwise."""
    return await service.client.post(
        f"/v1/offers/{offer}/redemptions",
        json={"channel": "in_store", **body},
        headers=service.auth("partner", partner),
    )

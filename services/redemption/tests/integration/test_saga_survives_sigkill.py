"""The storefront saga in a real service process, SIGKILLed at every step: just after accepting the
requests, after asking for the debits, after the wallet answered (while it was down), after asking for
the orders, while handling the orders' outcomes, after asking for refunds and after the refunds were
recorded. The test plays the wallet (one ledger entry per idempotency key, as the contract says) and the
order service. Every redemption ends charged exactly once and refunded at most once."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chassis.auth import issue_token
from chassis.service_process import ServiceProcess
from chassis.testing import read_topic, wait_until
from contracts.orders import OrderState
from contracts.topics import Topics
from deploy.infra.net import free_port
from services.redemption.tests.integration.conftest import order_changes, wallet_records

pytestmark = pytest.mark.fault

REDEMPTIONS = 4


class PlayedWallet:
    """Answers every request it sees; a repeated idempotency key gets the same entry back."""

    def __init__(self, bootstrap: str, redemption_ids: set[str]) -> None:
        self.bootstrap = bootstrap
        self.ids = redemption_ids
        self.entries: dict[str, uuid.UUID] = {}
        self.answered: set[str] = set()

    async def requests(self, topic: str) -> list[dict[str, Any]]:
        found = []
        for record in await read_topic(self.bootstrap, topic):
            envelope = json.loads(record.value)
            if envelope["data"]["reference"].get("redemption_id") in self.ids:
                found.append(envelope)
        return found

    async def wait_for_requests(self, topic: str, wanted: set[str], what: str) -> None:
        """Until the requests seen on `topic` are for exactly the redemptions `wanted`."""

        async def asked() -> bool:
            return {r["data"]["reference"]["redemption_id"] for r in await self.requests(topic)} == wanted

        await wait_until(asked, timeout=60, interval=0.3, what=what)

    async def answer_all(self, topic: str) -> int:
        answered = 0
        for request in await self.requests(topic):
            if request["event_id"] in self.answered:
                continue
            key = request["data"]["idempotency_key"]
            entry = self.entries.setdefault(key, uuid.uuid4())
            await wallet_records(self.bootstrap, request, entry_id=entry)
            self.answered.add(request["event_id"])
            answered += 1
        return answered

    def kinds(self) -> list[str]:
        return sorted(key.rsplit(":", 1)[1] for key in self.entries)


async def _create_requests(bootstrap: str, ids: set[str]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for record in await read_topic(bootstrap, Topics.ORDER_CREATE_REQUESTED):
        envelope = json.loads(record.value)
        if envelope["data"]["redemption_id"] in ids:
            latest[envelope["data"]["redemption_id"]] = envelope
    return latest


async def _states(dsn: str) -> dict[str, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT redemption_id, state FROM storefront_redemptions")
    finally:
        await conn.close()
    return {str(r["redemption_id"]): r["state"] for r in rows}


async def test_a_saga_killed_at_every_step_charges_once_and_refunds_at_most_once(
    service_db: Any, kafka_bootstrap: str, registry_topics: None, tmp_path: Path
) -> None:
    name = f"redemption_{uuid.uuid4().hex[:8]}"
    service = ServiceProcess(
        "services.redemption",
        service_db,
        kafka_bootstrap,
        free_port(),
        tmp_path / f"{name}.log",
        ORCHARD_SERVICE=name,
        ORCHARD_REDEMPTION_SAGA_RETRY_BASE="2",
        ORCHARD_REDEMPTION_SAGA_REDRIVE_INTERVAL="0.5",
    )
    admin = issue_token(role="admin", sub="ada")
    restart = lambda: asyncio.to_thread(service.start)  # noqa: E731
    try:
        await restart()
        reward = service.request(
            "POST",
            "/v1/rewards",
            admin,
            json={"name": "Cinema ticket", "campaign_id": "camp-cinema", "points_price": "300"},
        )
        assert reward.status_code == 201, reward.text
        members = [f"m-{uuid.uuid4().hex[:6]}" for _ in range(REDEMPTIONS)]
        ids = set()
        for member in members:
            answer = service.request(
                "POST",
                "/v1/storefront/redemptions",
                issue_token(role="member", sub=member),
                json={"reward_id": reward.json()["reward_id"], "email": "x@example.com"},
            )
            assert answer.status_code == 202, answer.text
            ids.add(answer.json()["redemption_id"])
        service.kill()  # 1: requests accepted, debit requests perhaps not yet published

        wallet = PlayedWallet(kafka_bootstrap, ids)
        await restart()

        await wallet.wait_for_requests(Topics.WALLET_DEBIT_REQUESTED, ids, "debit requests")
        service.kill()  # 2: debits asked, no answer yet
        await wallet.answer_all(Topics.WALLET_DEBIT_REQUESTED)  # 3: the wallet answers while we are down

        await restart()
        creates: dict[str, dict[str, Any]] = {}

        async def all_orders_asked() -> bool:
            creates.update(await _create_requests(kafka_bootstrap, ids))
            return set(creates) == ids

        await wait_until(all_orders_asked, timeout=60, interval=0.3, what="order requests")
        service.kill()  # 4: orders asked
        orders = {rid: uuid.uuid4() for rid in ids}
        for rid in ids:
            await order_changes(kafka_bootstrap, creates[rid], orders[rid], OrderState.PENDING)

        await restart()
        await wait_until(
            lambda: _all_in(service_db.dsn, ids, {"order_pending"}),
            timeout=60,
            interval=0.3,
            what="orders pending",
        )
        cancelled = set(sorted(ids)[: REDEMPTIONS // 2])
        for rid in ids:
            state = OrderState.CANCELLED if rid in cancelled else OrderState.COMPLETED
            await order_changes(
                kafka_bootstrap,
                creates[rid],
                orders[rid],
                state,
                previous=OrderState.PENDING,
                reason="no stock" if rid in cancelled else None,
            )
        await asyncio.sleep(0.3)
        service.kill()  # 5: in the middle of handling the orders' outcomes

        await restart()

        await wallet.wait_for_requests(Topics.WALLET_CREDIT_REQUESTED, cancelled, "refund requests")
        service.kill()  # 6: refunds asked
        await wallet.answer_all(Topics.WALLET_CREDIT_REQUESTED)

        await restart()
        await asyncio.sleep(0.5)
        service.kill()  # 7: refunds recorded, perhaps not yet applied
        await restart()
        # Anything asked again after a restart is answered again, as a real wallet would.
        await wallet.answer_all(Topics.WALLET_DEBIT_REQUESTED)
        await wallet.answer_all(Topics.WALLET_CREDIT_REQUESTED)
        completed = ids - cancelled
        await wait_until(
            lambda: _all_in(service_db.dsn, cancelled, {"refunded"}),
            timeout=60,
            interval=0.3,
            what="refunded",
        )
        await wait_until(
            lambda: _all_in(service_db.dsn, completed, {"completed"}),
            timeout=60,
            interval=0.3,
            what="completed",
        )

        debit_keys = {
            r["data"]["idempotency_key"] for r in await wallet.requests(Topics.WALLET_DEBIT_REQUESTED)
        }
        refund_requests = await wallet.requests(Topics.WALLET_CREDIT_REQUESTED)
        assert debit_keys == {f"redemption:{rid}:debit" for rid in ids}
        assert {r["data"]["reference"]["redemption_id"] for r in refund_requests} == cancelled
        assert wallet.kinds() == ["debit"] * REDEMPTIONS + ["refund"] * len(cancelled)
        conn = await asyncpg.connect(service_db.dsn)
        try:
            per_kind = await conn.fetch(
                "SELECT kind, count(*) AS n, count(DISTINCT redemption_id) AS r"
                " FROM storefront_wallet_entries GROUP BY kind ORDER BY kind"
            )
        finally:
            await conn.close()
        assert [(r["kind"], r["n"], r["r"]) for r in per_kind] == [
            ("debit", REDEMPTIONS, REDEMPTIONS),
            ("refund", len(cancelled), len(cancelled)),
        ]
        assert service.kills == 6
    finally:
        service.kill()


async def _all_in(dsn: str, ids: set[str], states: set[str]) -> bool:
    current = await _states(dsn)
    return all(current.get(rid) in states for rid in ids)

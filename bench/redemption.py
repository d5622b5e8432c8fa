"""`python -m bench.redemption [--redemptions N] [--clients C] [--json PATH]`: storefront redemptions per
second, end to end.

A real redemption service (its `ServiceRuntime`: HTTP app, outbox relay, inbox consumers, jobs) runs in
this process on a fresh schema. C concurrent clients POST /v1/storefront/redemptions; the clock runs
from the first request to the moment every saga is `completed` in the database. Each redemption makes
five Kafka hops and four service transactions: the request (saga row, debit request, record) →
`wallet.debit_requested` → `wallet.transaction_recorded` → `order.create_requested` →
`order.state_changed` pending → `order.state_changed` completed.

The wallet is the REAL wallet service by default (its own `ServiceRuntime` and schema in this process:
ledger row locks, idempotency check, member audit chain), every member credited beforehand; one wallet
serves the whole run. `--wallet played` swaps it for a stand-in answering each debit at once.
THE ORDER SERVICE IS PLAYED: completing a real order needs the voucher and delivery services, so a
stand-in consumes `order.create_requested` (assigned partitions, no group) and answers pending then
completed at once with an idempotent acks=all producer, doing no database work. So the figure is the
storefront saga with the real wallet and an instant order service.

Raw baselines measured in the same run on the same broker and database: (a) aiokafka produce+consume of
N real envelopes, (b8) asyncpg 1-row INSERT transactions from 8 workers. Not a test: it asserts nothing
about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from chassis.auth import issue_token
from chassis.service import ServiceRuntime
from chassis.testing import read_topic
from contracts.envelope import Envelope, EventData
from contracts.orders import (
    FulfilmentStatus,
    OrderCreateRequested,
    OrderSource,
    OrderState,
    OrderStateChanged,
)
from contracts.registry import TOPICS, topic
from contracts.topics import Topics
from contracts.wallet import (
    Direction,
    EntryType,
    WalletCreditRequested,
    WalletDebitRequested,
    WalletTransactionRecorded,
)
from deploy.infra.topics import ensure_topics
from deploy.testing import drop_service_db, new_service_db
from services.redemption.app import build_spec
from services.redemption.settings import RedemptionSettings

from . import baselines, measure
from .infra import Infra, open_infra
from .measure import PARTITIONS, Measurement, message_key, save_record, voucher_issued_events, wait_for_count

RELAY_PRODUCER = baselines.RELAY_PRODUCER


class PlayedPartners:
    """The wallet and the order service reduced to instant answers."""

    def __init__(self, bootstrap: str, *, play_wallet: bool) -> None:
        self.bootstrap = bootstrap
        self.topics = [Topics.ORDER_CREATE_REQUESTED] + (
            [Topics.WALLET_DEBIT_REQUESTED] if play_wallet else []
        )
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **RELAY_PRODUCER)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        self.consumer.assign(
            [TopicPartition(name, p) for name in self.topics for p in range(topic(name).partitions)]
        )
        await self.consumer.seek_to_end()
        self.task = asyncio.create_task(self._answer())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()
        await self.producer.stop()

    async def _send(self, topic: str, key: str, cause: dict[str, Any], producer: str, data: EventData) -> Any:
        envelope = Envelope.new(
            event_type=topic,
            producer=producer,
            data=data,
            correlation_id=cause["correlation_id"],
            causation_id=cause["event_id"],
        )
        return await self.producer.send(topic, key=key.encode(), value=envelope.to_bytes())

    async def _answer(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            pending = []
            for tp, records in batches.items():
                for record in records:
                    envelope = json.loads(record.value)
                    if tp.topic == Topics.WALLET_DEBIT_REQUESTED:
                        debit = WalletDebitRequested.model_validate(
                            envelope["data"], context={"tolerant": True}
                        )
                        pending.append(
                            await self._send(
                                Topics.WALLET_TRANSACTION_RECORDED,
                                debit.member_id,
                                envelope,
                                "wallet",
                                WalletTransactionRecorded(
                                    entry_id=uuid.uuid5(uuid.NAMESPACE_URL, debit.idempotency_key),
                                    member_id=debit.member_id,
                                    entry_type=debit.entry_type,
                                    direction=Direction.DEBIT,
                                    amount=debit.amount,
                                    balance_after=1_000_000,
                                    idempotency_key=debit.idempotency_key,
                                    reference=debit.reference,
                                ),
                            )
                        )
                    else:
                        create = OrderCreateRequested.model_validate(
                            envelope["data"], context={"tolerant": True}
                        )
                        order_id = uuid.uuid5(uuid.NAMESPACE_URL, create.idempotency_key)
                        common = {
                            "order_id": order_id,
                            "booking_id": f"BK-{order_id.hex[:10].upper()}",
                            "member_id": create.member_id,
                            "campaign_id": create.campaign_id,
                            "external_ref": create.idempotency_key,
                            "source": OrderSource.STOREFRONT,
                            "redemption_id": create.redemption_id,
                        }
                        for state, previous, status in (
                            (OrderState.PENDING, None, FulfilmentStatus.AWAITING_VOUCHER),
                            (OrderState.COMPLETED, OrderState.PENDING, None),
                        ):
                            pending.append(
                                await self._send(
                                    Topics.ORDER_STATE_CHANGED,
                                    str(order_id),
                                    envelope,
                                    "order",
                                    OrderStateChanged(
                                        state=state,
                                        previous_state=previous,
                                        fulfilment_status=status,
                                        **common,
                                    ),
                                )
                            )
            if pending:
                await asyncio.gather(*pending)


@contextlib.asynccontextmanager
async def real_wallet(infra: Infra, members: list[str], points_each: int) -> AsyncIterator[None]:
    """The wallet service on its own schema, every member credited with `points_each` first."""
    from services.wallet.service import build_spec as build_wallet_spec
    from services.wallet.settings import WalletSettings

    db = await new_service_db(infra.admin_dsn, prefix="benchw")
    settings = WalletSettings(
        ORCHARD_SERVICE=f"wallet_bench_{uuid.uuid4().hex[:6]}",
        **db.service_env(infra.bootstrap),
        ORCHARD_LOG_LEVEL="WARNING",
    )
    runtime = ServiceRuntime(settings, build_wallet_spec(settings))
    await runtime.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=infra.bootstrap, **RELAY_PRODUCER)
        await producer.start()
        try:
            for member in members:
                credit = WalletCreditRequested(
                    member_id=member,
                    amount=points_each,
                    idempotency_key=f"bench-seed-{uuid.uuid4()}",
                    entry_type=EntryType.MANUAL_ADJUSTMENT,
                    reason_code="bench",
                    requested_by="service:bench",
                )
                envelope = Envelope.new(
                    event_type=Topics.WALLET_CREDIT_REQUESTED, producer="bench", data=credit
                )
                await producer.send_and_wait(
                    Topics.WALLET_CREDIT_REQUESTED, key=member.encode(), value=envelope.to_bytes()
                )
        finally:
            await producer.stop()
        app = runtime.http_app()
        admin = {"Authorization": f"Bearer {issue_token(role='admin', sub='bench', settings=settings)}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as client:

            async def credited() -> int:
                done = 0
                for member in members:
                    answer = await client.get(f"/v1/members/{member}/wallet", headers=admin)
                    done += answer.status_code == 200 and int(answer.json()["balance"]) >= points_each
                return done

            await wait_for_count(credited, len(members), what="members credited")
        yield
    finally:
        await runtime.stop()
        await drop_service_db(db)


async def storefront(infra: Infra, redemptions: int, members: list[str], *, wallet: str) -> Measurement:
    """(s) Redemptions through the real service, from the first POST to the last saga completed."""
    return await _storefront(infra, redemptions, members, wallet=wallet)


async def _storefront(infra: Infra, redemptions: int, members: list[str], *, wallet: str) -> Measurement:
    clients = len(members)
    db = await new_service_db(infra.admin_dsn, prefix="bench")
    settings = RedemptionSettings(
        ORCHARD_SERVICE=f"redemption_bench_{uuid.uuid4().hex[:6]}",
        **db.service_env(infra.bootstrap),
        ORCHARD_LOG_LEVEL="WARNING",
        ORCHARD_DB_POOL_MAX=clients + 4,
    )
    runtime = ServiceRuntime(settings, build_spec(settings))
    partners = PlayedPartners(infra.bootstrap, play_wallet=wallet == "played")
    await runtime.start()
    await partners.start()
    try:
        while True:
            with contextlib.suppress(Exception):
                await runtime.check_kafka()
                break
            await asyncio.sleep(0.1)
        app = runtime.http_app()
        admin = {"Authorization": f"Bearer {issue_token(role='admin', sub='bench', settings=settings)}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
            reward = await client.post(
                "/v1/rewards",
                headers=admin,
                json={"name": "Bench reward", "campaign_id": "bench", "points_price": "100"},
            )
            reward_id = reward.json()["reward_id"]
            tokens = [
                {"Authorization": f"Bearer {issue_token(role='member', sub=member, settings=settings)}"}
                for member in members
            ]
            pool = runtime.pool
            assert pool is not None

            async def completed() -> int:
                return int(
                    await pool.fetchval(
                        "SELECT count(*) FROM storefront_redemptions WHERE state = 'completed'"
                    )
                )

            async def client_loop(i: int, count: int) -> None:
                for _ in range(count):
                    answer = await client.post(
                        "/v1/storefront/redemptions",
                        headers=tokens[i],
                        json={"reward_id": reward_id, "email": "bench@example.com"},
                    )
                    if answer.status_code != 202:
                        raise RuntimeError(f"redemption refused: {answer.text}")

            shares = [
                redemptions // clients + (1 if i < redemptions % clients else 0) for i in range(clients)
            ]
            started = time.monotonic()
            await asyncio.gather(*(client_loop(i, n) for i, n in enumerate(shares)))
            accepted = time.monotonic()
            try:
                finished = await wait_for_count(completed, redemptions, what="completed sagas")
            except RuntimeError:
                states = await pool.fetch(
                    "SELECT state, reason, count(*) AS n FROM storefront_redemptions GROUP BY state, reason"
                )
                raise RuntimeError(f"sagas stalled: {[tuple(r) for r in states]}") from None
        return Measurement(
            "s",
            f"storefront redemptions end to end, {clients} clients, {wallet} wallet",
            redemptions,
            finished - started,
            {"requests_per_s": round(redemptions / (accepted - started))},
        )
    finally:
        await partners.stop()
        await runtime.stop()
        await drop_service_db(db)


async def run_all(infra: Infra, redemptions: int, clients: int, wallet: str) -> list[Measurement]:
    await ensure_topics(infra.bootstrap, TOPICS)
    warm_members = [f"w-{uuid.uuid4().hex[:8]}" for _ in range(clients)]
    members = [f"m-{uuid.uuid4().hex[:8]}" for _ in range(clients)]
    envelopes = voucher_issued_events(redemptions)
    messages = [(message_key(e).encode(), e.to_bytes()) for e in envelopes]
    rows = [(e.event_id, value) for e, (_, value) in zip(envelopes, messages, strict=True)]
    raw_topic = await infra.new_topic(PARTITIONS)
    async with contextlib.AsyncExitStack() as stack:
        # One wallet for the whole run: a second one on a fresh schema would replay the first one's
        # requests from the topics' history and answer them again with entries of its own.
        if wallet == "real":
            await stack.enter_async_context(
                real_wallet(infra, warm_members + members, points_each=100 * redemptions)
            )
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        await storefront(infra, max(redemptions // 10, clients * 5), warm_members, wallet=wallet)  # warm-up
        logging.getLogger("aiokafka").setLevel(logging.NOTSET)
        results = [
            await baselines.kafka_round_trip(infra, raw_topic, messages),
            await baselines.postgres_inserts(infra, rows, workers=8),
            await storefront(infra, redemptions, members, wallet=wallet),
        ]
    dead = 0
    for name in (
        Topics.WALLET_TRANSACTION_RECORDED,
        Topics.WALLET_DEBIT_REQUESTED,
        Topics.ORDER_STATE_CHANGED,
    ):
        dead += len(await read_topic(infra.bootstrap, f"{name}.dlq"))
    results[-1].extra["dead_letters"] = dead
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redemption", description=__doc__)
    parser.add_argument("--redemptions", type=int, default=2000, help="redemptions (default 2000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (default 8)")
    parser.add_argument(
        "--wallet",
        choices=("real", "played"),
        default="real",
        help="the real wallet service in this process (default) or a stand-in answering at once",
    )
    measure.add_json_option(parser)
    args = parser.parse_args()
    measure.quiet_logs()
    started_at = datetime.now(UTC)
    with open_infra() as infra:
        results = asyncio.run(run_all(infra, args.redemptions, args.clients, args.wallet))
        sources = infra.sources
    rate = {m.key: m.rate for m in results}
    ratio = {"s/a": rate["s"] / rate["a"], "s/b8": rate["s"] / rate["b8"]}
    lines = [
        f"Orchard redemption bench: {args.redemptions} redemptions, {args.clients} clients,"
        f" {os.cpu_count()} CPUs; Kafka: {sources['kafka']}; Postgres: {sources['postgres']}",
        f"wallet: {args.wallet}; order service PLAYED by the bench (instant answers, no database work)",
        "",
        f"{'':3} {'scenario':66} {'count':>6} {'seconds':>8} {'per s':>8}  notes",
    ]
    lines += [
        f"{m.key:3} {m.label:66} {m.events:6d} {m.seconds:8.2f} {m.rate:8.0f}  "
        + " ".join(f"{k} {v}" for k, v in m.extra.items())
        for m in results
    ]
    lines += ["", "ratios: " + "  ".join(f"{k} {v:.3f}" for k, v in ratio.items())]
    print("\n".join(lines))
    record = {
        "started_at": started_at.isoformat(),
        "redemptions": args.redemptions,
        "clients": args.clients,
        "wallet": args.wallet,
        "order_service": "played by the bench",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()},
        "infra": sources,
        "results": [
            {
                "key": m.key,
                "label": m.label,
                "count": m.events,
                "seconds": m.seconds,
                "per_s": m.rate,
                **m.extra,
            }
            for m in results
        ],
        "ratios": ratio,
    }
    save_record(record, "redemption-", started_at, args.json)


if __name__ == "__main__":
    main()

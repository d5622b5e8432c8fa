"""CPU per voucher order of the read-model consumers, batch handlers on and off (a measurement, not a test).

    CPU_ORDERS=600 python -m pytest services/wallet/tests/perf/cpu_per_order.py -s -q

For each of wallet, support and redemption, and each mode: a fresh schema and private consumer groups,
the order path's events of N orders produced first (3 order.state_changed, voucher.issued,
delivery.succeeded per order), then the service runtime started in this process; its CPU time (this
process, psutil) is read from start until every one of those events is in its inbox. Runtime start-up
is measured alone (no events of ours) and subtracted. Prints ms of CPU per order and the ratio.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from typing import Any

import psutil
import pytest

from chassis.sealed_codes import dev_sealer
from chassis.service import ServiceRuntime, ServiceSpec
from chassis.testing import private_group_consumer, produce
from contracts.delivery import DeliverySucceeded
from contracts.envelope import Envelope
from contracts.orders import FulfilmentStatus, OrderSource, OrderState, OrderStateChanged
from contracts.registry import consumed_by
from contracts.topics import Topics
from contracts.values import Channel
from contracts.vouchers import VoucherIssued
from deploy.infra.topics import ensure_topics
from deploy.testing import drop_service_db, new_service_db


def order_events(n: int) -> tuple[dict[str, list[tuple[bytes, bytes]]], list[uuid.UUID]]:
    topics: dict[str, list[tuple[bytes, bytes]]] = {t: [] for t in _TOPICS}
    ids: list[uuid.UUID] = []
    for i in range(n):
        oid = uuid.uuid4()
        key = str(oid).encode()
        base = {
            "order_id": oid,
            "booking_id": f"BK-{oid.hex[:10].upper()}",
            "member_id": f"m-{i % 97}",
            "campaign_id": "camp-cpu",
            "source": OrderSource.IPA,
        }
        steps = [
            (OrderState.PENDING, None, FulfilmentStatus.AWAITING_VOUCHER),
            (OrderState.PENDING, OrderState.PENDING, FulfilmentStatus.DELIVERING),
            (OrderState.COMPLETED, OrderState.PENDING, None),
        ]
        for state, previous, status in steps:
            data: Any = OrderStateChanged(
                **base, state=state, previous_state=previous, fulfilment_status=status
            )
            topics[Topics.ORDER_STATE_CHANGED].append((key, _env(Topics.ORDER_STATE_CHANGED, data, ids)))
        code_id = uuid.uuid4()
        voucher = VoucherIssued(
            order_id=oid,
            campaign_id="camp-cpu",
            code_id=code_id,
            sealed_code=dev_sealer().seal("QX7M-4T9K-2W8P", code_id),
            masked_code="****-****-2W8P",
            face_value="10.00",
            currency="EUR",
        )
        topics[Topics.VOUCHER_ISSUED].append((key, _env(Topics.VOUCHER_ISSUED, voucher, ids)))
        sent = DeliverySucceeded(order_id=oid, delivery_id=uuid.uuid4(), channel=Channel.EMAIL, attempt=1)
        topics[Topics.DELIVERY_SUCCEEDED].append((key, _env(Topics.DELIVERY_SUCCEEDED, sent, ids)))
    return topics, ids


_TOPICS = (Topics.ORDER_STATE_CHANGED, Topics.VOUCHER_ISSUED, Topics.DELIVERY_SUCCEEDED)


def _env(topic: str, data: Any, ids: list[uuid.UUID]) -> bytes:
    envelope = Envelope.new(event_type=topic, producer="cpu-driver", data=data)
    ids.append(envelope.event_id)
    return envelope.to_bytes()


def build(service: str, db: Any, bootstrap: str) -> tuple[Any, ServiceSpec]:
    common = {
        "ORCHARD_SERVICE": service,
        "DATABASE_URL": db.dsn,
        "ORCHARD_DB_SCHEMA": db.schema,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
    }
    if service == "wallet":
        from services.wallet.service import build_spec as wallet_spec
        from services.wallet.settings import WalletSettings

        settings: Any = WalletSettings(**common)
        return settings, wallet_spec(settings)
    if service == "support":
        from services.support.__main__ import build_spec as support_spec
        from services.support.settings import SupportSettings

        settings = SupportSettings(**common)
        return settings, support_spec(settings)[0]
    from services.redemption.app import build_spec as redemption_spec
    from services.redemption.settings import RedemptionSettings

    settings = RedemptionSettings(**common)
    return settings, redemption_spec(settings)


async def run_once(
    service: str, batched: bool, admin_dsn: str, bootstrap: str, ids: list[uuid.UUID], expect: int
) -> float:
    """CPU seconds from runtime start until `expect` inbox rows for our events `ids` are there."""
    db = await new_service_db(admin_dsn)
    try:
        settings, spec = build(service, db, bootstrap)
        subs = (
            spec.subscriptions
            if batched
            else [dataclasses.replace(s, handle_batch=None) for s in spec.subscriptions]
        )
        prefix = f"cpu{uuid.uuid4().hex[:8]}"
        spec = dataclasses.replace(
            spec, subscriptions=subs, consumer_class=private_group_consumer(prefix), jobs=[]
        )
        runtime = ServiceRuntime(settings, spec)
        me = psutil.Process()
        before = me.cpu_times()
        await runtime.start()
        try:
            assert runtime.pool is not None
            deadline = time.monotonic() + 600
            while True:
                async with runtime.pool.acquire() as conn:
                    seen = await conn.fetchval(
                        "SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])", ids
                    )
                if seen >= expect or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.25)
            after = me.cpu_times()
        finally:
            await runtime.stop()
        return (after.user + after.system) - (before.user + before.system)
    finally:
        await drop_service_db(db)


@pytest.mark.parametrize("service", ["wallet", "support", "redemption"])
async def test_cpu_per_order(service: str, pg_admin_dsn: str, kafka_bootstrap: str) -> None:
    n = int(os.environ.get("CPU_ORDERS", "600"))
    await ensure_topics(kafka_bootstrap, consumed_by(service))
    # Start-up and whatever is already on the topics (earlier runs), with no events of ours to wait for.
    idle = {m: await run_once(service, m, pg_admin_dsn, kafka_bootstrap, [], 0) for m in (False, True)}
    topics, ids = order_events(n)
    for topic, messages in topics.items():
        await produce(kafka_bootstrap, topic, messages)
    _, spec = build(service, _NoDb(), kafka_bootstrap)
    expect = sum(len(topics[s.topic]) for s in spec.subscriptions if s.topic in topics)
    cpu = {m: await run_once(service, m, pg_admin_dsn, kafka_bootstrap, ids, expect) for m in (False, True)}
    per_order = {m: (cpu[m] - idle[m]) * 1000 / n for m in cpu}
    print(
        f"\n{service}: {n} orders ({expect} events consumed) one by one {per_order[False]:.2f} ms CPU/order,"
        f" batched {per_order[True]:.2f} ms CPU/order, ratio {per_order[True] / per_order[False]:.2f}"
        f" (start-up alone {idle[False]:.2f} s / {idle[True]:.2f} s)"
    )


@dataclasses.dataclass
class _NoDb:
    dsn: str = "postgresql://unused/unused"
    schema: str = "unused"

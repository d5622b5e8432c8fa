"""A batch survives its worker stopping half-way; a record that can never be answered is dead-lettered."""

from __future__ import annotations

import json

import pytest

from chassis.testing import produce, read_topic, wait_until
from contracts.topics import Topics
from services.order.batches import BatchWorker

from .conftest import OrderService, voucher_record


@pytest.mark.parametrize("order_service", [{"ORCHARD_ORDER_IPA_CHUNK_ROWS": 20}], indirect=True)
async def test_a_batch_interrupted_half_way_resumes_where_it_stopped_and_accepts_each_row_once(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    worker = order_service.ctx.worker
    assert worker is not None
    records = [voucher_record(campaign) for _ in range(300)]
    batch_id = await order_service.upload_json(records)

    async def half_way() -> bool:
        validated = await order_service.pool.fetchval(
            "SELECT validated FROM ipa_batches WHERE batch_id = $1::uuid", batch_id
        )
        return bool(validated >= 40)

    await wait_until(half_way, interval=0.01, what="some chunks done")
    await worker.stop()  # cancelled mid-batch, perhaps mid-chunk: that chunk's transaction rolls back
    stopped_at = await order_service.pool.fetchval(
        "SELECT validated FROM ipa_batches WHERE batch_id = $1::uuid", batch_id
    )
    successor = BatchWorker(order_service.pool, chunk_rows=20, poll_s=0.2, stale_after_s=60)
    order_service.ctx.worker = successor
    successor.start()
    batch = await order_service.finished_batch(batch_id)

    assert stopped_at < 300
    assert (batch["status"], batch["validated"], batch["accepted"], batch["rejected"]) == (
        "completed",
        300,
        300,
        0,
    )
    orders = await order_service.pool.fetchval(
        "SELECT count(*) FROM orders WHERE batch_id = $1::uuid", batch_id
    )
    accepted_events = await order_service.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'ipa.record_accepted'"
        " AND position($1 in convert_from(payload, 'UTF8')) > 0",
        batch_id,
    )
    assert orders == 300
    assert accepted_events == 300


async def test_a_submitted_record_without_a_reference_is_dead_lettered_with_the_reason(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    envelope = {
        "event_id": "6f1c0f7e-1d7e-4a57-9b61-000000000001",
        "event_type": "ipa.record_submitted",
        "schema_version": 1,
        "occurred_at": "2026-11-23T10:00:00Z",
        "producer": "hris",
        "correlation_id": f"no-ref-{campaign}",
        "data": {"member_id": "m-1", "campaign_id": campaign, "reward_type": "voucher", "amount": "5.00"},
    }
    await produce(
        order_service.bootstrap, Topics.IPA_RECORD_SUBMITTED, [(b"none", json.dumps(envelope).encode())]
    )

    found: list = []

    async def dead_lettered() -> bool:
        records = await read_topic(order_service.bootstrap, Topics.IPA_RECORD_SUBMITTED.dlq)
        found[:] = [r for r in records if f"no-ref-{campaign}".encode() in r.value]
        return bool(found)

    await wait_until(dead_lettered, timeout=60, interval=0.5, what="the record in the DLQ")
    headers = dict(found[0].headers)
    assert b"external_ref" in headers["x-orchard-dlq-error"]

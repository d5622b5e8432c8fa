"""A batch survives its worker stopping half-way; a record that can never be answered is dead-lettered."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from asyncpg import Record

from chassis.testing import produce, read_topic, wait_until
from contracts.topics import Topics
from services.order.batches import BatchWorker

from .conftest import OrderService, voucher_record


async def _interrupted_batch(order_service: OrderService, counter: str) -> tuple[str, Record, dict[str, Any]]:
    """300 rows uploaded; the worker stopped once the batch's `counter` passed 40 rows (perhaps mid-chunk:
    that chunk's transaction rolls back) and a successor started. The batch's id, its counters as the
    worker left them and the batch as the successor finished it."""
    campaign = await order_service.campaign()
    worker = order_service.ctx.worker
    assert worker is not None
    batch_id = await order_service.upload_json([voucher_record(campaign) for _ in range(300)])

    async def passed_40() -> bool:
        done = await order_service.pool.fetchval(
            f"SELECT {counter} FROM ipa_batches WHERE batch_id = $1::uuid", batch_id
        )
        return bool(done >= 40)

    await wait_until(passed_40, interval=0.01, what=f"some chunks {counter}")
    await worker.stop()
    stopped = await order_service.pool.fetchrow(
        "SELECT status, validated, accepted FROM ipa_batches WHERE batch_id = $1::uuid", batch_id
    )
    successor = BatchWorker(order_service.pool, chunk_rows=20, poll_s=0.2, stale_after_s=60)
    order_service.ctx.worker = successor
    successor.start()
    return batch_id, stopped, await order_service.finished_batch(batch_id)


@pytest.mark.parametrize("order_service", [{"ORCHARD_ORDER_IPA_CHUNK_ROWS": 20}], indirect=True)
async def test_a_batch_interrupted_half_way_resumes_where_it_stopped_and_accepts_each_row_once(
    order_service: OrderService,
) -> None:
    batch_id, stopped, batch = await _interrupted_batch(order_service, "validated")

    assert stopped["validated"] < 300
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


@pytest.mark.parametrize("order_service", [{"ORCHARD_ORDER_IPA_CHUNK_ROWS": 20}], indirect=True)
async def test_a_batch_interrupted_while_accepting_resumes_there_and_accepts_each_row_once(
    order_service: OrderService,
) -> None:
    batch_id, stopped, batch = await _interrupted_batch(order_service, "accepted")

    assert (stopped["validated"], stopped["accepted"] < 300) == (300, True)
    assert (batch["status"], batch["validated"], batch["valid"], batch["accepted"], batch["rejected"]) == (
        "completed",
        300,
        300,
        300,
        0,
    )
    assert await order_service.pool.fetchval(
        "SELECT count(DISTINCT external_ref) FROM orders WHERE batch_id = $1::uuid", batch_id
    ) == await order_service.pool.fetchval("SELECT count(*) FROM orders WHERE batch_id = $1::uuid", batch_id)


async def test_a_valid_row_whose_reference_was_accepted_before_its_turn_is_rejected_and_the_counts_add_up(
    order_service: OrderService,
) -> None:
    """Validation and acceptance are separate passes: what happened in between is judged at acceptance."""
    campaign = await order_service.campaign()
    records = [voucher_record(campaign) for _ in range(3)]
    taken = records[1]["external_ref"]
    batch_id = uuid.uuid4()
    async with order_service.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO ipa_records (external_ref, source, member_id, campaign_id, reward_type, amount,"
            " currency) VALUES ($1, 'topic', 'm-elsewhere', $2, 'voucher', 25, 'EUR')",
            taken,
            campaign,
        )
        await conn.execute(
            "INSERT INTO ipa_batches (batch_id, source, mode, status, created_by, received, validated, valid)"
            " VALUES ($1, 'json', 'accept_valid', 'accepting', 'tester', 3, 3, 3)",
            batch_id,
        )
        await conn.executemany(
            "INSERT INTO ipa_batch_rows (batch_id, row_number, external_ref, cells, status)"
            " VALUES ($1, $2, $3, $4::jsonb, 'valid')",
            [(batch_id, n, r["external_ref"], json.dumps(r)) for n, r in enumerate(records, start=1)],
        )
    order_service.ctx.wake_worker()
    batch = await order_service.finished_batch(str(batch_id))

    assert (batch["validated"], batch["valid"], batch["accepted"], batch["rejected"]) == (3, 2, 2, 1)
    errors = await order_service.http.get(
        f"/v1/ipa/batches/{batch_id}/errors.csv", headers=order_service.auth()
    )
    assert taken in errors.text
    assert "from ipa.record_submitted" in errors.text
    [rejected] = await order_service.pool.fetch(
        "SELECT payload FROM outbox WHERE topic = 'ipa.record_rejected' AND message_key = $1", taken
    )
    assert b'"code":"duplicate"' in rejected["payload"]


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

"""A fetched batch of events is handled together (set-based) with the effect of taking them one by one:
the batch handlers called directly in one transaction, and whole batches sent through the broker."""

from __future__ import annotations

import uuid
from typing import Any

from chassis.testing import produce, read_topic, wait_until
from contracts.envelope import Envelope
from contracts.ipa import IpaRecordSubmitted
from contracts.topics import Topics
from services.order.handlers import SubmittedRecordCells, subscriptions

from .conftest import OrderService, voucher_record
from .test_order_lifecycle import delivered, failed, issued, new_orders


def _batch_handler(name: str) -> Any:
    [sub] = [s for s in subscriptions() if s.name == name]
    assert sub.handle_batch is not None
    return sub.handle_batch


def _cells(record: IpaRecordSubmitted, producer: str) -> Envelope[SubmittedRecordCells]:
    data = SubmittedRecordCells(**record.model_dump(mode="json", exclude_none=True))
    return Envelope.new(event_type=Topics.IPA_RECORD_SUBMITTED, producer=producer, data=data)


async def test_an_order_met_several_times_in_one_batch_sees_each_event_in_turn(
    order_service: OrderService,
) -> None:
    first, second = await new_orders(order_service, 2)
    unknown = {**first, "order_id": str(uuid.uuid4())}
    batch = [
        (Topics.DELIVERY_FAILED, failed(first, final=False)),
        (Topics.DELIVERY_FAILED, failed(unknown, final=True)),
        (Topics.DELIVERY_FAILED, failed(first, final=True, attempt=2)),
        (Topics.DELIVERY_FAILED, failed(second, final=True)),
        (Topics.DELIVERY_FAILED, failed(second, final=False, attempt=2)),
    ]
    envelopes = [Envelope.new(event_type=t, producer="delivery", data=d) for t, d in batch]

    async with order_service.pool.acquire() as conn, conn.transaction():
        await _batch_handler("delivery-failed")(conn, envelopes)

    one = await order_service.order(first["order_id"])
    two = await order_service.order(second["order_id"])
    assert (one["fulfilment_status"], one["needs_attention"]) == ("delivery_failed", True)
    assert "attempt 2, final" in one["status_reason"]
    assert [(t["event"], t["fulfilment_status"], t["cause_event_id"]) for t in one["timeline"][1:]] == [
        ("delivery.failed.retrying", "delivering", str(envelopes[0].event_id)),
        ("delivery.failed.final", "delivery_failed", str(envelopes[2].event_id)),
    ]
    assert (two["fulfilment_status"], two["needs_attention"]) == ("delivering", False)
    assert [t["event"] for t in two["timeline"][1:]] == ["delivery.failed.final", "delivery.failed.retrying"]
    assert (
        await order_service.pool.fetchval(
            "SELECT count(*) FROM outbox WHERE message_key = ANY($1::text[]) AND topic = $2",
            [first["order_id"], second["order_id"]],
            Topics.ORDER_STATE_CHANGED,
        )
        == 2 + 4
    )  # created, then every applied change


async def test_events_after_completion_in_the_same_batch_are_only_recorded_as_late(
    order_service: OrderService,
) -> None:
    [order] = await new_orders(order_service)
    envelopes = [
        Envelope.new(event_type=Topics.DELIVERY_SUCCEEDED, producer="delivery", data=delivered(order)),
        Envelope.new(event_type=Topics.DELIVERY_SUCCEEDED, producer="delivery", data=delivered(order, 2)),
    ]

    async with order_service.pool.acquire() as conn, conn.transaction():
        await _batch_handler("delivery-succeeded")(conn, envelopes)

    done = await order_service.order(order["order_id"])
    assert (done["state"], done["late_events"]) == ("completed", 1)
    assert [(t["applied"], t["late"]) for t in done["timeline"][1:]] == [(True, False), (False, True)]


async def test_records_submitted_together_are_judged_as_if_one_by_one(order_service: OrderService) -> None:
    campaign = await order_service.campaign()
    records = [IpaRecordSubmitted(**voucher_record(campaign)) for _ in range(3)]
    repeated = records[1]
    envelopes = [
        _cells(records[0], "hris"),
        _cells(repeated, "hris"),
        _cells(IpaRecordSubmitted(**voucher_record(campaign, email=None)), "hris"),  # unreachable
        _cells(repeated, "payroll"),
        _cells(records[2], "payroll"),
    ]

    async with order_service.pool.acquire() as conn, conn.transaction():
        await _batch_handler("ipa-intake")(conn, envelopes)

    orders = {
        r["external_ref"]: r
        for r in await order_service.pool.fetch(
            "SELECT o.external_ref, o.order_id, t.actor, t.cause_event_id FROM orders o"
            " JOIN order_timeline t USING (order_id) WHERE o.campaign_id = $1",
            campaign,
        )
    }
    assert set(orders) == {r.external_ref for r in records}
    assert orders[records[2].external_ref]["actor"] == "service:payroll"
    assert orders[repeated.external_ref]["cause_event_id"] == envelopes[1].event_id
    rejected = await order_service.pool.fetch(
        "SELECT message_key, payload FROM outbox WHERE topic = $1 AND message_key = ANY($2::text[])",
        Topics.IPA_RECORD_REJECTED,
        [repeated.external_ref, envelopes[2].data.external_ref],
    )
    reasons = {r["message_key"]: r["payload"].decode() for r in rejected}
    assert '"code":"duplicate"' in reasons[repeated.external_ref]
    assert str(orders[repeated.external_ref]["order_id"]) in reasons[repeated.external_ref]
    assert '"code":"channel_unreachable"' in reasons[envelopes[2].data.external_ref]


async def test_a_burst_on_the_broker_with_a_record_without_reference_loses_nothing_else(
    order_service: OrderService,
) -> None:
    campaign = await order_service.campaign()
    records = [IpaRecordSubmitted(**voucher_record(campaign)) for _ in range(40)]
    envelopes = [_cells(r, "hris") for r in records]
    nameless = Envelope.new(
        event_type=Topics.IPA_RECORD_SUBMITTED,
        producer="hris",
        data=SubmittedRecordCells(**{**voucher_record(campaign), "external_ref": " "}),
    )
    messages = [(e.data.external_ref.encode(), e.to_bytes()) for e in envelopes]
    messages.insert(20, (b"nameless", nameless.to_bytes()))
    await produce(order_service.bootstrap, Topics.IPA_RECORD_SUBMITTED, messages)

    async def all_orders() -> bool:
        count = await order_service.pool.fetchval(
            "SELECT count(*) FROM orders WHERE campaign_id = $1", campaign
        )
        return bool(count == len(records))

    async def dead_lettered() -> bool:
        records = await read_topic(order_service.bootstrap, Topics.IPA_RECORD_SUBMITTED.dlq)
        return any(str(nameless.event_id).encode() in r.value for r in records)

    await wait_until(all_orders, what="an order for every record with a reference")
    await wait_until(dead_lettered, timeout=60, interval=0.5, what="the record without reference in the DLQ")
    ids = [
        str(r["order_id"])
        for r in await order_service.pool.fetch(
            "SELECT order_id FROM orders WHERE campaign_id = $1", campaign
        )
    ]
    await produce(
        order_service.bootstrap,
        Topics.VOUCHER_ISSUED,
        [
            (
                i.encode(),
                Envelope.new(event_type=Topics.VOUCHER_ISSUED, producer="voucher", data=issued(o)).to_bytes(),
            )
            for i in ids
            for o in [{"order_id": i, "campaign_id": campaign}]
        ],
    )

    async def all_delivering() -> bool:
        count = await order_service.pool.fetchval(
            "SELECT count(*) FROM orders WHERE campaign_id = $1 AND fulfilment_status = 'delivering'",
            campaign,
        )
        return bool(count == len(ids))

    await wait_until(all_delivering, what="every order delivering")

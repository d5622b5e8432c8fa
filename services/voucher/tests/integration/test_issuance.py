"""Issuance through the real broker and Postgres: redelivery, replicas, holds, release."""

from __future__ import annotations

import json
import uuid

from chassis.sealed_codes import CodeOpener, dev_key_pair
from chassis.testing import read_topic
from contracts.orders import OrderState
from contracts.topics import Topics

from .conftest import auth, order_event, publish_orders


async def test_a_pending_order_gets_exactly_one_code_even_when_its_event_is_redelivered(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 5)
    order_id = uuid.uuid4()
    event = order_event(order_id, campaign)
    again = order_event(order_id, campaign)  # the same fact published twice under new event ids
    await publish_orders(voucher.bootstrap, [event, event, again, event])
    await voucher.wait_for(
        "SELECT count(*) FROM inbox WHERE event_id = ANY($1::uuid[])",
        [event.event_id, again.event_id],
        expected=2,
        what="both events handled",
    )
    assert await voucher.issuance_count(campaign) == 1
    # A crash after the commit but before the offsets were committed: the same records come again.
    consumer = voucher.runtimes[0].consumer
    records = [
        r
        for r in await read_topic(voucher.bootstrap, Topics.ORDER_STATE_CHANGED)
        if r.key == str(order_id).encode()
    ]
    assert len(records) == 4
    await consumer.process(consumer.subscriptions[0], records)
    assert await voucher.issuance_count(campaign) == 1
    code_id = await voucher.pool.fetchval("SELECT code_id FROM codes WHERE order_id = $1", order_id)
    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )
    issued = await voucher.events(Topics.VOUCHER_ISSUED, order_id=order_id)
    assert len(issued) == 1
    assert issued[0]["data"]["code_id"] == str(code_id)
    assert issued[0]["causation_id"] in {str(event.event_id), str(again.event_id)}
    reveal = await voucher.http.post(
        f"/v1/codes/{code_id}/reveal", json={"reason": "test check"}, headers=auth("admin")
    )
    clear = reveal.json()["code"]
    # Only the delivery service's key opens the code the event carries; the row left holds nothing.
    assert issued[0]["schema_version"] == 2
    assert "code" not in issued[0]["data"]
    assert clear not in json.dumps(issued[0])
    opened = CodeOpener([dev_key_pair()[0]]).open(issued[0]["data"]["sealed_code"], code_id)
    assert opened.get_secret_value() == clear
    assert issued[0]["data"]["masked_code"].endswith(clear[-4:])
    assert (
        await voucher.pool.fetchval(
            "SELECT length(payload) FROM outbox WHERE topic = $1 AND message_key = $2",
            Topics.VOUCHER_ISSUED,
            str(order_id),
        )
        == 0
    )


async def test_two_replicas_never_give_two_codes_to_one_order_nor_one_code_to_two_orders(start_voucher):
    voucher = await start_voucher(replicas=2)
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 40)
    orders = [uuid.uuid4() for _ in range(60)]
    events = [order_event(o, campaign) for o in orders]
    await publish_orders(voucher.bootstrap, events + events[::3])
    await voucher.wait_for(
        "SELECT (SELECT count(*) FROM issuances) + (SELECT count(*) FROM holds WHERE campaign_id = $1)",
        campaign,
        expected=60,
        what="every order issued or held",
    )
    rows = await voucher.pool.fetch(
        "SELECT order_id, code_id FROM issuances WHERE campaign_id = $1", campaign
    )
    assert len(rows) == 40
    assert len({r["code_id"] for r in rows}) == 40
    assert {r["order_id"] for r in rows} <= set(orders)
    held = [
        r["order_id"]
        for r in await voucher.pool.fetch(
            "SELECT order_id FROM holds WHERE campaign_id = $1 ORDER BY seq", campaign
        )
    ]
    assert len(held) == 20
    # New stock serves the held orders automatically, oldest first.
    await voucher.generate(campaign, 25)
    await voucher.wait_for(
        "SELECT count(*) FROM holds WHERE campaign_id = $1", campaign, expected=0, what="held orders served"
    )
    served = await voucher.pool.fetch(
        "SELECT order_id FROM issuances WHERE order_id = ANY($1::uuid[]) ORDER BY issuance_id", held
    )
    assert [r["order_id"] for r in served] == held
    assert await voucher.issuance_count(campaign) == 60
    failed = await voucher.events(Topics.VOUCHER_ISSUE_FAILED, campaign_id=campaign)
    assert len(failed) == 20
    assert {f["data"]["reason"] for f in failed} == {"out_of_stock"}


async def test_cancelled_order_releases_its_code_but_a_delivered_one_keeps_it(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 2)
    cancelled, delivered = uuid.uuid4(), uuid.uuid4()
    await publish_orders(
        voucher.bootstrap, [order_event(cancelled, campaign), order_event(delivered, campaign)]
    )
    await voucher.wait_for("SELECT count(*) FROM issuances", expected=2, what="two issuances")
    await publish_orders(
        voucher.bootstrap,
        [
            order_event(
                cancelled, campaign, state=OrderState.CANCELLED, fulfilment=None, reason="eligibility"
            ),
            order_event(delivered, campaign, state=OrderState.COMPLETED, fulfilment=None),
            order_event(delivered, campaign, state=OrderState.CANCELLED, fulfilment=None, reason="late"),
        ],
    )
    await voucher.wait_for(
        "SELECT count(*) FROM codes WHERE status = 'available'", expected=1, what="the code released"
    )
    await voucher.wait_for(
        "SELECT count(*) FROM closed_orders WHERE order_id = ANY($1::uuid[])",
        [cancelled, delivered],
        expected=2,
        what="both orders closed",
    )
    assert await voucher.pool.fetchval("SELECT order_id FROM codes WHERE status = 'issued'") == delivered
    released = await voucher.pool.fetchrow("SELECT * FROM issuances WHERE order_id = $1", cancelled)
    assert released["release_reason"] == "order_cancelled"
    campaign_view = (await voucher.http.get(f"/v1/campaigns/{campaign}", headers=auth("ops"))).json()
    assert campaign_view["code_counts"] == {"available": 1, "issued": 1}
    # A late "awaiting voucher" for the cancelled order issues nothing.
    await publish_orders(voucher.bootstrap, [order_event(cancelled, campaign)])
    late = order_event(uuid.uuid4(), campaign)
    await publish_orders(voucher.bootstrap, [late])
    await voucher.wait_for("SELECT count(*) FROM issuances", expected=3, what="a later order served")
    assert await voucher.pool.fetchval("SELECT count(*) FROM issuances WHERE order_id = $1", cancelled) == 1


async def test_paused_campaign_and_exhausted_budget_hold_orders_until_resumed_or_raised(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign(budget="50.00", low_stock_threshold=3)
    await voucher.generate(campaign, 5)
    pause = await voucher.http.post(
        f"/v1/campaigns/{campaign}/pause", json={"reason": "audit"}, headers=auth("ops")
    )
    assert pause.status_code == 200
    orders = [uuid.uuid4() for _ in range(3)]
    await publish_orders(voucher.bootstrap, [order_event(o, campaign) for o in orders])
    await voucher.wait_for(
        "SELECT count(*) FROM holds WHERE campaign_id = $1",
        campaign,
        expected=3,
        what="orders held while paused",
    )
    resume = await voucher.http.post(f"/v1/campaigns/{campaign}/resume", headers=auth("ops"))
    assert resume.status_code == 200
    await voucher.wait_for("SELECT count(*) FROM issuances", expected=2, what="budget for two codes")
    assert await voucher.pool.fetchval("SELECT reason FROM holds WHERE campaign_id = $1", campaign) == (
        "budget_exhausted"
    )
    asked = await voucher.http.patch(
        f"/v1/campaigns/{campaign}", json={"budget": "100.00"}, headers=auth("ops")
    )
    assert asked.status_code == 202, asked.text  # a budget increase waits for a second person
    raised = await voucher.http.post(
        f"/v1/approvals/{asked.json()['approval_id']}/approve", headers=auth("approver", "checker")
    )
    assert raised.status_code == 200, raised.text
    await voucher.wait_for("SELECT count(*) FROM issuances", expected=3, what="held order served")
    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )
    reasons = {
        e["data"]["reason"] for e in await voucher.events(Topics.VOUCHER_ISSUE_FAILED, campaign_id=campaign)
    }
    assert reasons == {"campaign_paused"}
    low = await voucher.events(Topics.VOUCHER_STOCK_LOW, campaign_id=campaign)
    assert [(e["data"]["available"], e["data"]["threshold"]) for e in low] == [(3, 3)]
    view = (await voucher.http.get(f"/v1/campaigns/{campaign}", headers=auth("finance"))).json()
    assert view["budget_used"] == "75.00"
    assert view["budget_left"] == "25.00"
    assert view["issuance"]["total"] == 3

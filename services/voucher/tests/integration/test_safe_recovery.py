"""Recovery never hands one code to two people (DESIGN.md §5 "Recovery and refusals"): a delivered code
is voided for good and its order gets a fresh code, published for delivery; an undelivered one returns
to its pool as before."""

from __future__ import annotations

import uuid
from typing import Any

from contracts.orders import OrderState
from contracts.topics import Topics

from .conftest import auth, order_event, publish_orders


async def _issue(voucher, campaign: str) -> tuple[uuid.UUID, uuid.UUID]:
    order_id = uuid.uuid4()
    await publish_orders(voucher.bootstrap, [order_event(order_id, campaign)])
    await voucher.wait_for(
        "SELECT count(*) FROM issuances WHERE order_id = $1", order_id, expected=1, what="code issued"
    )
    return order_id, await voucher.pool.fetchval("SELECT code_id FROM codes WHERE order_id = $1", order_id)


async def _deliver(voucher, campaign: str, order_id: uuid.UUID) -> None:
    completed = order_event(order_id, campaign, state=OrderState.COMPLETED, fulfilment=None)
    await publish_orders(voucher.bootstrap, [completed])
    await voucher.wait_for(
        "SELECT count(*) FROM codes WHERE order_id = $1 AND delivered", order_id, expected=1, what="delivered"
    )


async def _recover(voucher, code_id: uuid.UUID) -> dict:
    answer = await voucher.http.post(
        "/v1/codes/recover",
        json={"code_ids": [str(code_id)], "reason": "member says it was stolen"},
        headers=auth("admin"),
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def _recover_a_delivered_code(
    start_voucher, pool_size: int
) -> tuple[Any, str, uuid.UUID, uuid.UUID, dict]:
    """A campaign with `pool_size` codes, one issued to an order and delivered, then recovered: the
    voucher service, the campaign, the order, the code and the recovery's answer."""
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, pool_size)
    order_id, code_id = await _issue(voucher, campaign)
    await _deliver(voucher, campaign, order_id)
    return voucher, campaign, order_id, code_id, await _recover(voucher, code_id)


async def test_a_recovered_delivered_code_is_voided_for_good_and_its_order_gets_a_fresh_code(start_voucher):
    voucher, campaign, order_id, old_code, result = await _recover_a_delivered_code(start_voucher, 3)

    assert result["recovered"] == 1
    assert result["replaced"] == [str(old_code)]
    old = await voucher.pool.fetchrow("SELECT status, order_id FROM codes WHERE code_id = $1", old_code)
    assert (old["status"], old["order_id"]) == ("void", order_id)
    fresh = await voucher.pool.fetchrow(
        "SELECT code_id, status, delivered FROM codes WHERE order_id = $1 AND status <> 'void'", order_id
    )
    assert fresh["code_id"] != old_code
    assert (fresh["status"], fresh["delivered"]) == ("issued", False)
    live = await voucher.pool.fetch(
        "SELECT code_id FROM issuances WHERE order_id = $1 AND released_at IS NULL", order_id
    )
    assert [r["code_id"] for r in live] == [fresh["code_id"]]

    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )
    issued = await voucher.events(Topics.VOUCHER_ISSUED, order_id=order_id)
    assert [e["data"]["code_id"] for e in issued] == [str(old_code), str(fresh["code_id"])]
    statuses = await voucher.events(Topics.VOUCHER_STATUS_CHANGED, code_id=old_code)
    assert statuses[-1]["data"]["status"] == "void"
    assert statuses[-1]["data"]["order_id"] == str(order_id)

    # Never issued again: the other codes go to the next orders, then the pool is empty.
    _, third = await _issue(voucher, campaign)
    assert third not in (old_code, fresh["code_id"])
    last = uuid.uuid4()
    await publish_orders(voucher.bootstrap, [order_event(last, campaign)])
    await voucher.wait_for(
        "SELECT count(*) FROM holds WHERE order_id = $1", last, expected=1, what="the next order held"
    )
    assert await voucher.pool.fetchval("SELECT status FROM codes WHERE code_id = $1", old_code) == "void"


async def test_a_recovered_code_never_delivered_returns_to_its_pool_and_its_order_gets_none(start_voucher):
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 1)
    _, code_id = await _issue(voucher, campaign)

    result = await _recover(voucher, code_id)

    assert (result["recovered"], result["replaced"]) == (1, [])
    row = await voucher.pool.fetchrow("SELECT status, order_id FROM codes WHERE code_id = $1", code_id)
    assert (row["status"], row["order_id"]) == ("recovered", None)
    _, reissued = await _issue(voucher, campaign)
    assert reissued == code_id


async def test_a_delivered_code_with_no_fresh_code_to_replace_it_is_left_as_it_was(start_voucher):
    voucher, _, order_id, code_id, result = await _recover_a_delivered_code(start_voucher, 1)

    assert result["recovered"] == 0
    assert result["not_replaced"] == [{"code_id": str(code_id), "reason": "out_of_stock"}]
    row = await voucher.pool.fetchrow(
        "SELECT status, order_id, delivered FROM codes WHERE code_id = $1", code_id
    )
    assert (row["status"], row["order_id"], row["delivered"]) == ("issued", order_id, True)
    assert await voucher.pool.fetchval("SELECT count(*) FROM holds WHERE order_id = $1", order_id) == 0

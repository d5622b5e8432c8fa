"""UAT test orders: issued one of the campaign's test codes (never a real one, and real orders never a
test code), no budget used, held in a queue of their own, and their code redeemable in test mode only."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx

from contracts.orders import OrderState
from contracts.topics import Topics

from .conftest import Voucher, auth, order_event, publish_orders


async def _code_of(voucher: Voucher, order_id: uuid.UUID) -> dict[str, object]:
    await voucher.wait_for(
        "SELECT count(*) FROM codes WHERE order_id = $1", order_id, expected=1, what=f"a code for {order_id}"
    )
    row = await voucher.pool.fetchrow(
        "SELECT code_id, test, status FROM codes WHERE order_id = $1 AND status <> 'void'", order_id
    )
    return dict(row)


async def _clear(voucher: Voucher, code_id: object) -> str:
    reveal = await voucher.http.post(
        f"/v1/codes/{code_id}/reveal", json={"reason": "UAT check"}, headers=auth("admin")
    )
    assert reveal.status_code == 200, reveal.text
    return str(reveal.json()["code"])


async def test_test_and_real_orders_of_one_batch_each_get_a_code_of_their_own_kind(start_voucher) -> None:
    voucher = await start_voucher()
    campaign = await voucher.create_campaign(budget="50.00")
    await voucher.generate(campaign, 2)
    await voucher.generate(campaign, 2, test=True)
    tests = [uuid.uuid4() for _ in range(2)]
    reals = [uuid.uuid4() for _ in range(2)]
    await publish_orders(
        voucher.bootstrap,
        [
            order_event(tests[0], campaign, test=True),
            order_event(reals[0], campaign),
            order_event(tests[1], campaign, test=True),
            order_event(reals[1], campaign),
        ],
    )

    for order_id in tests:
        assert (await _code_of(voucher, order_id))["test"] is True
    for order_id in reals:
        assert (await _code_of(voucher, order_id))["test"] is False
    budget_used = await voucher.pool.fetchval(
        "SELECT budget_used FROM campaigns WHERE campaign_id = $1", campaign
    )
    assert budget_used == Decimal("50")
    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )
    changed = await voucher.events(Topics.VOUCHER_STATUS_CHANGED, order_id=tests[0])
    assert [e["data"]["test"] for e in changed] == [True]


async def test_a_test_order_without_a_test_code_is_held_apart_and_served_when_test_codes_come(
    start_voucher,
) -> None:
    # The held-order job stays off: the count asserted is what the generation itself served.
    voucher = await start_voucher(ORCHARD_VOUCHER_HOLD_INTERVAL=3600)
    campaign = await voucher.create_campaign(budget="25.00")
    await voucher.generate(campaign, 1)
    waiting, real = uuid.uuid4(), uuid.uuid4()

    await publish_orders(voucher.bootstrap, [order_event(waiting, campaign, test=True)])
    await voucher.wait_for(
        "SELECT test FROM holds WHERE order_id = $1", waiting, expected=True, what="the test order held"
    )
    await publish_orders(voucher.bootstrap, [order_event(real, campaign)])
    real_code = await _code_of(voucher, real)  # not queued behind the held test order
    generated = await voucher.generate(campaign, 1, test=True)
    test_code = await _code_of(voucher, waiting)

    assert real_code["test"] is False
    assert generated["held_orders_served"] == 1
    assert test_code["test"] is True
    assert await voucher.pool.fetchval("SELECT count(*) FROM holds WHERE campaign_id = $1", campaign) == 0
    await voucher.wait_for(
        "SELECT count(*) FROM outbox WHERE published_at IS NULL", expected=0, what="events published"
    )
    [failed] = await voucher.events(Topics.VOUCHER_ISSUE_FAILED, order_id=waiting)
    assert failed["data"]["reason"] == "out_of_stock"


async def test_a_test_orders_code_redeems_in_test_mode_only_and_returns_to_the_test_pool_on_cancel(
    start_voucher,
) -> None:
    voucher = await start_voucher()
    campaign = await voucher.create_campaign(budget="25.00")
    await voucher.generate(campaign, 2, test=True)
    redeemed_order, cancelled_order = uuid.uuid4(), uuid.uuid4()
    await publish_orders(
        voucher.bootstrap,
        [order_event(redeemed_order, campaign, test=True), order_event(cancelled_order, campaign, test=True)],
    )
    code = await _code_of(voucher, redeemed_order)
    cancelled_code = await _code_of(voucher, cancelled_order)
    clear = await _clear(voucher, code["code_id"])

    async def redeem(test_mode: bool, key: str) -> httpx.Response:
        body = {"code": clear, "channel": "online", "idempotency_key": key, "test_mode": test_mode}
        return await voucher.http.post("/v1/redemptions", json=body, headers=auth("partner", "partner-1"))

    live = await redeem(False, "live-1")
    uat = await redeem(True, "uat-1")
    await publish_orders(
        voucher.bootstrap,
        [order_event(cancelled_order, campaign, state=OrderState.CANCELLED, fulfilment=None, test=True)],
    )
    await voucher.wait_for(
        "SELECT status FROM codes WHERE code_id = $1",
        cancelled_code["code_id"],
        expected="available",
        what="the cancelled test order's code back in its pool",
    )

    assert live.status_code == 422, live.text
    assert live.json()["code"] == "test_code_in_live_mode"
    assert uat.status_code == 200, uat.text
    assert await voucher.pool.fetchval(
        "SELECT (test, order_id IS NULL) FROM codes WHERE code_id = $1", cancelled_code["code_id"]
    ) == (True, True)
    assert (
        await voucher.pool.fetchval("SELECT budget_used FROM campaigns WHERE campaign_id = $1", campaign) == 0
    )


async def test_a_budget_set_later_counts_real_codes_held_not_test_ones(start_voucher) -> None:
    voucher = await start_voucher()
    campaign = await voucher.create_campaign()
    await voucher.generate(campaign, 1)
    await voucher.generate(campaign, 1, test=True)
    test_order, real_order, waiting = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    # The first test order takes the one test code before the second arrives (orders on different
    # partitions are handled in no set order).
    await publish_orders(voucher.bootstrap, [order_event(test_order, campaign, test=True)])
    await _code_of(voucher, test_order)
    await publish_orders(
        voucher.bootstrap, [order_event(real_order, campaign), order_event(waiting, campaign, test=True)]
    )
    await _code_of(voucher, real_order)
    await voucher.wait_for(
        "SELECT count(*) FROM holds WHERE order_id = $1",
        waiting,
        expected=1,
        what="the second test order held",
    )

    overview = (await voucher.http.get(f"/v1/campaigns/{campaign}", headers=auth("ops"))).json()
    budgeted = await voucher.http.patch(
        f"/v1/campaigns/{campaign}", json={"budget": "100.00"}, headers=auth("admin")
    )

    assert (overview["held_orders"], overview["held_test_orders"]) == (0, 1)
    assert overview["budget_used"] == "25.00"
    assert budgeted.status_code == 200, budgeted.text
    assert budgeted.json()["budget_used"] == "25.00"

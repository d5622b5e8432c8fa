"""Serving a batch of orders at once has exactly the effect of serving them one by one.

Each scenario is played twice on twin campaigns in one schema: order by order with `issuance.issue`,
and as one batch with `batch_issuance.issue_many`. Codes, holds, budgets and every event written
(with its cause) must match, once order and code ids are replaced by their positions.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from contracts.envelope import Envelope
from contracts.orders import FulfilmentStatus, OrderSource, OrderState, OrderStateChanged
from contracts.topics import Topics
from contracts.values import Channel, RewardType
from contracts.vouchers import ExpiryKind, ExpiryPolicy
from services.voucher import batch_issuance, campaigns, codes, issuance
from services.voucher.handlers import order_subscription
from services.voucher.service import build_vault
from services.voucher.settings import VoucherSettings

from .conftest import order_event

VAULT = build_vault(VoucherSettings())
# Differ between the twin campaigns by construction; codes are compared by their rank in the pool.
RANDOM_FIELDS = frozenset({"campaign_id", "code_id", "sealed_code", "masked_code", "expires_at"})


@dataclass
class Scenario:
    codes: int
    orders: int
    budget: str | None = None
    threshold: int = 0
    paused: bool = False
    # Order positions that repeat an earlier order of the batch, as a redelivered event would.
    repeats: dict[int, int] = field(default_factory=dict)
    # Order positions served (or held) before the batch arrives.
    served_before: tuple[int, ...] = ()
    held_before: tuple[int, ...] = ()
    values: dict[int, str] = field(default_factory=dict)  # order position → its own amount


SCENARIOS = {
    "plenty_of_stock": Scenario(codes=30, orders=20, repeats={7: 3, 12: 3}),
    "stock_runs_out_midway": Scenario(codes=8, orders=15),
    "budget_runs_out_midway": Scenario(codes=20, orders=12, budget="100.00", values={1: "10.00", 4: "30.00"}),
    "threshold_crossed_once": Scenario(codes=12, orders=10, threshold=5),
    "already_served_orders_change_nothing": Scenario(codes=20, orders=10, served_before=(2, 5)),
    "orders_queue_behind_earlier_holds": Scenario(codes=3, orders=6, held_before=(0, 1, 2, 3)),
    "paused_campaign_holds_everything": Scenario(codes=10, orders=5, paused=True),
    "threshold_already_below_on_first_grant": Scenario(codes=3, orders=5, threshold=10),
}


async def make_campaign(pool: Any, campaign_id: str, s: Scenario) -> None:
    fields = {
        "campaign_id": campaign_id,
        "name": "Twin",
        "reward_type": RewardType.VOUCHER,
        "brand": "Books & Co",
        "face_value": Decimal(25),
        "currency": "EUR",
        "expiry_policy": ExpiryPolicy(kind=ExpiryKind.DAYS_AFTER_ISSUE, days=30),
        "budget": Decimal(s.budget) if s.budget else None,
        "default_channel": Channel.EMAIL,
        "per_record_limit": None,
        "partner_ids": (),
        "low_stock_threshold": s.threshold,
        "allow_partial": True,
    }
    async with pool.acquire() as conn, conn.transaction():
        await campaigns.create(conn, fields, actor="test")
        await codes.generate(
            conn, VAULT, campaign_id, count=s.codes, length=10, prefix="", test=False, actor="t"
        )
        for n, value in enumerate(sorted(set(s.values.values()))):
            # Two codes of each other value, taken from the newest end of the pool.
            await conn.execute(
                "UPDATE codes SET value = $2, remaining_value = $2 WHERE code_id IN"
                " (SELECT code_id FROM codes WHERE campaign_id = $1 ORDER BY seq DESC OFFSET $3 LIMIT 2)",
                campaign_id,
                Decimal(value),
                2 * n,
            )


def order_envelopes(campaign_id: str, s: Scenario) -> list[Envelope[OrderStateChanged]]:
    ids = [uuid.uuid4() for _ in range(s.orders)]
    for position, earlier in s.repeats.items():
        ids[position] = ids[earlier]
    return [
        order_event(
            order_id,
            campaign_id,
            amount=Decimal(s.values[i]) if i in s.values else None,
            source=OrderSource.IPA,
            booking_id=f"BK-{i}",
            member_id=f"m-{i}",
        )
        for i, order_id in enumerate(ids)
    ]


def request(envelope: Envelope[OrderStateChanged]) -> issuance.OrderRequest:
    order = envelope.data
    return issuance.OrderRequest(
        order.order_id, order.campaign_id, order.member_id, order.amount, envelope.correlation_id
    )


async def play(pool: Any, campaign_id: str, s: Scenario, *, batched: bool) -> dict[str, Any]:
    await make_campaign(pool, campaign_id, s)
    envelopes = order_envelopes(campaign_id, s)
    async with pool.acquire() as conn, conn.transaction():
        for i in s.served_before + s.held_before:
            await issuance.issue(conn, VAULT, request(envelopes[i]), cause=envelopes[i])
        if s.held_before:  # an out-of-stock queue: the codes taken just now are returned
            await conn.execute("DELETE FROM holds WHERE campaign_id = $1", campaign_id)
            for i in s.held_before:
                await conn.execute(
                    "INSERT INTO holds (order_id, campaign_id, member_id, reason, correlation_id)"
                    " VALUES ($1, $2, 'm', 'out_of_stock', 'c')",
                    envelopes[i].data.order_id,
                    campaign_id,
                )
            await conn.execute(
                "UPDATE codes SET status = 'available', order_id = NULL, member_id = NULL"
                " WHERE order_id = ANY($1::uuid[])",
                [envelopes[i].data.order_id for i in s.held_before],
            )
            await conn.execute(
                "DELETE FROM issuances WHERE order_id = ANY($1::uuid[])",
                [envelopes[i].data.order_id for i in s.held_before],
            )
        if s.paused:
            await conn.execute("UPDATE campaigns SET status = 'paused' WHERE campaign_id = $1", campaign_id)
    first_outbox = await pool.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    async with pool.acquire() as conn, conn.transaction():
        if batched:
            await batch_issuance.issue_many(
                conn, VAULT, [batch_issuance.Pending(request(e), e) for e in envelopes]
            )
        else:
            for envelope in envelopes:
                await issuance.issue(conn, VAULT, request(envelope), cause=envelope)
    return await outcome(pool, campaign_id, envelopes, first_outbox)


async def outcome(pool: Any, campaign_id: str, envelopes: list[Envelope[Any]], after: int) -> dict[str, Any]:
    """Everything the batch changed, with ids replaced by positions (orders, codes, causes)."""
    orders = {e.data.order_id: i for i, e in reversed(list(enumerate(envelopes)))}
    causes = {str(e.event_id): i for i, e in enumerate(envelopes)}
    code_rank = {
        r["code_id"]: n
        for n, r in enumerate(
            await pool.fetch("SELECT code_id FROM codes WHERE campaign_id = $1 ORDER BY seq", campaign_id)
        )
    }
    issued = {
        orders[r["order_id"]]: (code_rank[r["code_id"]], str(r["value"]), r["status"])
        for r in await pool.fetch(
            "SELECT i.order_id, i.code_id, i.value, c.status FROM issuances i JOIN codes c USING (code_id)"
            " WHERE i.campaign_id = $1 AND i.released_at IS NULL",
            campaign_id,
        )
    }
    held = [
        (orders.get(r["order_id"], "earlier"), r["reason"])
        for r in await pool.fetch(
            "SELECT order_id, reason FROM holds WHERE campaign_id = $1 ORDER BY seq", campaign_id
        )
    ]
    events = []
    for r in await pool.fetch("SELECT topic, payload FROM outbox WHERE id > $1 ORDER BY id", after):
        envelope = json.loads(bytes(r["payload"]))
        data = {k: v for k, v in envelope["data"].items() if k not in RANDOM_FIELDS}
        if data.get("order_id"):
            data["order_id"] = orders.get(uuid.UUID(data["order_id"]), "earlier")
        events.append((r["topic"], causes.get(envelope["causation_id"] or ""), data))
    budget_used = await pool.fetchval("SELECT budget_used FROM campaigns WHERE campaign_id = $1", campaign_id)
    history = await pool.fetchval(
        "SELECT count(*) FROM code_events e JOIN codes c USING (code_id)"
        " WHERE c.campaign_id = $1 AND e.action = 'issued'",
        campaign_id,
    )
    return {"issued": issued, "held": held, "events": events, "budget_used": budget_used, "history": history}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_a_batch_of_orders_is_served_exactly_as_one_by_one(pool, name):
    scenario = SCENARIOS[name]
    one_by_one = await play(pool, f"seq-{name}", scenario, batched=False)
    batched = await play(pool, f"bat-{name}", scenario, batched=True)
    assert batched == one_by_one
    # And each scenario does what its name says.
    reasons = {reason for _, reason in one_by_one["held"]}
    assert (len(one_by_one["issued"]), reasons) == EXPECTED[name]
    stock_low = [data for topic, _, data in one_by_one["events"] if topic == Topics.VOUCHER_STOCK_LOW]
    assert len(stock_low) == (1 if scenario.threshold else 0)


EXPECTED: dict[str, tuple[int, set[str]]] = {
    "plenty_of_stock": (18, set()),
    "stock_runs_out_midway": (8, {"out_of_stock"}),
    "budget_runs_out_midway": (4, {"budget_exhausted"}),
    "threshold_crossed_once": (10, set()),
    "already_served_orders_change_nothing": (10, set()),
    "orders_queue_behind_earlier_holds": (0, {"out_of_stock"}),
    "paused_campaign_holds_everything": (0, {"campaign_paused"}),
    "threshold_already_below_on_first_grant": (3, {"out_of_stock"}),
}


async def test_a_mixed_batch_through_the_batch_handler_ends_as_event_by_event(pool):
    """Issues, deliveries, failures and cancellations of several orders, interleaved as Kafka brings
    them, give the same codes, flags and closed orders through either handler of the subscription."""
    sub = order_subscription(VAULT)
    assert sub.handle_batch is not None
    plan = [  # (order, state, fulfilment)
        (0, OrderState.PENDING, FulfilmentStatus.AWAITING_VOUCHER),
        (1, OrderState.PENDING, FulfilmentStatus.AWAITING_VOUCHER),
        (0, OrderState.COMPLETED, None),
        (1, OrderState.CANCELLED, None),
        (2, OrderState.PENDING, FulfilmentStatus.AWAITING_VOUCHER),
        (2, OrderState.PENDING, FulfilmentStatus.DELIVERY_FAILED),
        (3, OrderState.COMPLETED, None),  # completed before its pending arrives: never gets a code
        (3, OrderState.PENDING, FulfilmentStatus.AWAITING_VOUCHER),
        (4, OrderState.PENDING, FulfilmentStatus.AWAITING_VOUCHER),
        (0, OrderState.PENDING, FulfilmentStatus.AWAITING_VOUCHER),  # a late repeat
        (2, OrderState.COMPLETED, None),
    ]
    results = []
    for name, batched in (("mixed-seq", False), ("mixed-bat", True)):
        await make_campaign(pool, name, Scenario(codes=4, orders=0))
        ids = [uuid.uuid4() for _ in range(5)]
        envelopes = [
            Envelope.new(
                event_type=Topics.ORDER_STATE_CHANGED,
                producer="order",
                data=OrderStateChanged(
                    order_id=ids[i],
                    booking_id=f"BK-{i}",
                    member_id=f"m-{i}",
                    campaign_id=name,
                    source=OrderSource.IPA,
                    state=state,
                    fulfilment_status=fulfilment,
                ),
            )
            for i, state, fulfilment in plan
        ]
        async with pool.acquire() as conn, conn.transaction():
            if batched:
                await sub.handle_batch(conn, envelopes)
            else:
                for envelope in envelopes:
                    await sub.handle(conn, envelope)
        codes_now = await pool.fetch(
            "SELECT status, order_id, delivered, delivery_failed FROM codes WHERE campaign_id = $1", name
        )
        closed = await pool.fetch(
            "SELECT order_id, state FROM closed_orders WHERE order_id = ANY($1::uuid[])", ids
        )
        # Which code an order gets may differ (the order-by-order path does not go back for a code
        # released earlier in the same transaction); who holds a code, and its flags, may not.
        results.append(
            (
                sorted(
                    (
                        ids.index(c["order_id"]) if c["order_id"] else -1,
                        c["status"],
                        c["delivered"],
                        c["delivery_failed"],
                    )
                    for c in codes_now
                ),
                sorted((ids.index(c["order_id"]), c["state"]) for c in closed),
            )
        )
    assert results[0] == results[1]
    codes_after, closed_after = results[0]
    assert codes_after == [
        (-1, "available", False, False),
        (0, "issued", True, False),
        (2, "issued", True, False),
        (4, "issued", False, False),
    ]
    assert closed_after == [(0, "completed"), (1, "cancelled"), (2, "completed"), (3, "completed")]

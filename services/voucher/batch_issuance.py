"""Issuing codes to a whole batch of pending orders with a handful of set-based statements.

`issue_many` has the effect of `issuance.issue` called on each order in turn (that function states the
rules; this one keeps them), for a few statements per campaign instead of five per order:

- orders that already have a code or are closed change nothing (their stale holds go);
- UAT test orders go to `issuance.issue` order by order (their own pool of test codes and their own queue);
- a campaign that is unknown, for points, paused or ended, or that already has orders on hold, is
  left to `issuance.issue` order by order: those orders are held, first in first out;
- otherwise the campaign is locked as `issue` locks it, the oldest issuable codes are claimed with
  FOR UPDATE SKIP LOCKED, and orders are served in arrival order until one cannot be (no code of its
  value, or over budget); that order and every later one go to `issuance.issue`, which holds them;
- `voucher.stock_low` is raised once, caused by the order whose issuance crossed the threshold, with
  the count that order left, as the order-by-order path would.

The unique indexes that keep one code per order and one order per code are the same; a race with
another issuer still ends in a TransientError and a retry of the batch.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from chassis.db import Connection
from chassis.errors import TransientError
from contracts.envelope import Envelope, EventData
from contracts.values import RewardType
from contracts.vouchers import (
    CampaignStatus,
    VoucherStockLow,
)

from . import issuance
from .crypto import CodeVault
from .domain import expiry_on_issue, issue_blocker
from .events import publish_each
from .repository import issuance as repository


@dataclass(frozen=True)
class Pending:
    request: issuance.OrderRequest
    cause: Envelope[Any] | None = None


@dataclass(frozen=True)
class _Grant:
    pending: Pending
    code: asyncpg.Record
    value: Decimal


async def issue_many(conn: Connection, vault: CodeVault, orders: Sequence[Pending]) -> None:
    """Issue a code to (or hold) each order, in arrival order, in the caller's transaction."""
    firsts: dict[Any, Pending] = {}
    for pending in orders:  # a repeat of an order in the same batch finds it served: a no-op
        firsts.setdefault(pending.request.order_id, pending)
    if not firsts:
        return
    known = await repository.orders_and_campaigns(
        conn, list(firsts), sorted({p.request.campaign_id for p in firsts.values()})
    )
    if known["done"]:
        await repository.delete_holds(conn, known["done"])
    done = set(known["done"])
    by_campaign: dict[str, list[Pending]] = defaultdict(list)
    tests: list[Pending] = []
    for order_id, pending in firsts.items():
        if order_id not in done:
            (tests if pending.request.test else by_campaign[pending.request.campaign_id]).append(pending)
    budgeted = set(known["budgeted"])
    for campaign_id in sorted(by_campaign):  # one lock order for every issuer
        await _issue_in_campaign(conn, vault, campaign_id, by_campaign[campaign_id], campaign_id in budgeted)
    # UAT test orders take test codes from a pool and a queue of their own: they are few, one by one.
    await _one_by_one(conn, vault, tests)


async def _issue_in_campaign(
    conn: Connection, vault: CodeVault, campaign_id: str, orders: list[Pending], budgeted: bool
) -> None:
    campaign = await repository.lock_campaign_for_batch(conn, campaign_id, budgeted=budgeted)
    if (
        campaign is None
        or campaign["reward_type"] != RewardType.VOUCHER
        or issue_blocker(CampaignStatus(campaign["status"])) is not None
        or campaign["queued"]
    ):
        await _one_by_one(conn, vault, orders)
        return
    values = [p.request.value or campaign["face_value"] for p in orders]
    wanted: dict[Decimal, int] = defaultdict(int)
    for value in values:
        wanted[value] += 1
    pools = {
        value: deque(await repository.claim_codes(conn, campaign_id, value, n)) for value, n in wanted.items()
    }
    budget_left = campaign["budget"] - campaign["budget_used"] if campaign["budget"] is not None else None
    grants: list[_Grant] = []
    for pending, value in zip(orders, values, strict=True):
        if not pools[value] or (budget_left is not None and value > budget_left):
            break  # this order is held, and the ones after it queue behind it
        if budget_left is not None:
            budget_left -= value
        grants.append(_Grant(pending, pools[value].popleft(), value))
    if grants:
        await _record(conn, vault, campaign, grants)
    await _one_by_one(conn, vault, orders[len(grants) :])


async def _one_by_one(conn: Connection, vault: CodeVault, orders: Sequence[Pending]) -> None:
    for pending in orders:
        await issuance.issue(conn, vault, pending.request, cause=pending.cause)


async def _record(conn: Connection, vault: CodeVault, campaign: asyncpg.Record, grants: list[_Grant]) -> None:
    campaign_id = campaign["campaign_id"]
    if campaign["budget"] is not None:
        await repository.add_budget_used(conn, campaign_id, sum((g.value for g in grants), Decimal(0)))
    issued_at = datetime.now(UTC)
    policy = issuance.expiry_policy(campaign)
    taken = [
        issuance.Grant(
            campaign, g.code, g.value, expiry_on_issue(policy, issued_at, g.code["own_expires_at"])
        )
        for g in grants
    ]
    try:
        await repository.issue_codes(
            conn,
            campaign_id,
            [
                repository.CodeGrant(
                    code_id=t.code["code_id"],
                    order_id=g.pending.request.order_id,
                    member_id=g.pending.request.member_id,
                    value=g.value,
                    previous_status=t.code["status"],
                    expires_at=t.expires_at,
                )
                for g, t in zip(grants, taken, strict=True)
            ],
            issued_at=issued_at,
            actor=issuance.SYSTEM_ACTOR,
        )
    except asyncpg.UniqueViolationError as exc:
        # Another issuer served one of these orders (or took one of these codes) in a transaction we
        # raced with: the retried batch finds its issuance and skips that order.
        raise TransientError("concurrent issuance for an order of the batch") from exc
    events: list[tuple[EventData, Pending]] = []
    for grant, granted in zip(grants, taken, strict=True):
        events += [
            (data, grant.pending) for data in issuance.issued_events(vault, grant.pending.request, granted)
        ]
    if campaign["low_stock_threshold"] > 0 and not campaign["stock_low_notified"]:
        low = await _stock_low(conn, campaign_id, grants)
        if low is not None:  # right after the events of the grant that crossed the threshold
            crossing = next(n for n, g in enumerate(grants) if g.pending is low[1])
            events.insert(2 * crossing + 2, low)
    await publish_each(conn, [(data, p.cause, p.request.correlation_id) for data, p in events])


async def _stock_low(
    conn: Connection, campaign_id: str, grants: list[_Grant]
) -> tuple[VoucherStockLow, Pending] | None:
    """The threshold crossed during these grants: which grant crossed it and what it left available."""
    row = await repository.low_stock(conn, campaign_id)
    if row is None or row["available"] > row["threshold"]:
        return None
    # Each grant took one code: before them `available + len(grants)` were left, and the grant that
    # first left `threshold` or fewer is the one the order-by-order path would have reported.
    before = row["available"] + len(grants)
    reported = min(before - 1, row["threshold"])
    crossing = grants[before - reported - 1]
    await repository.mark_stock_low_notified(conn, campaign_id)
    low = VoucherStockLow(campaign_id=campaign_id, available=reported, threshold=row["threshold"])
    return low, crossing.pending

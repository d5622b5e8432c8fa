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
    CodeStatus,
    ExpiryKind,
    ExpiryPolicy,
    VoucherIssued,
    VoucherStatusChanged,
    VoucherStockLow,
)

from . import issuance
from .crypto import CodeVault
from .domain import expiry_on_issue, issue_blocker, mask
from .events import publish_each


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
    known = await conn.fetchrow(
        """
        SELECT array(SELECT o FROM unnest($1::uuid[]) AS o
                      WHERE EXISTS (SELECT 1 FROM issuances i WHERE i.order_id = o)
                         OR EXISTS (SELECT 1 FROM closed_orders c WHERE c.order_id = o)) AS done,
               array(SELECT campaign_id FROM campaigns
                      WHERE campaign_id = ANY($2::text[]) AND budget IS NOT NULL) AS budgeted
        """,
        list(firsts),
        sorted({p.request.campaign_id for p in firsts.values()}),
    )
    assert known is not None
    if known["done"]:
        await conn.execute("DELETE FROM holds WHERE order_id = ANY($1::uuid[])", known["done"])
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
    lock = "FOR NO KEY UPDATE" if budgeted else "FOR SHARE"
    campaign = await conn.fetchrow(
        f"""
        SELECT c.*,
               EXISTS (SELECT 1 FROM holds h WHERE h.campaign_id = c.campaign_id AND NOT h.test) AS queued
          FROM campaigns c WHERE c.campaign_id = $1 {lock} OF c
        """,
        campaign_id,
    )
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
    pools = {value: deque(await _claim_codes(conn, campaign_id, value, n)) for value, n in wanted.items()}
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


async def _claim_codes(
    conn: Connection, campaign_id: str, value: Decimal, count: int
) -> list[asyncpg.Record]:
    """The oldest issuable codes of this value no other transaction holds, locked for this one."""
    return list(
        await conn.fetch(
            """
            SELECT code_id, status, lookup_hash, secret, key_id, own_expires_at
              FROM codes
             WHERE campaign_id = $1 AND value = $2 AND status IN ('available', 'recovered') AND NOT test
               AND (expires_at IS NULL OR expires_at > now())
             ORDER BY seq LIMIT $3
               FOR UPDATE SKIP LOCKED
            """,
            campaign_id,
            value,
            count,
        )
    )


async def _record(conn: Connection, vault: CodeVault, campaign: asyncpg.Record, grants: list[_Grant]) -> None:
    campaign_id = campaign["campaign_id"]
    if campaign["budget"] is not None:
        total = sum((g.value for g in grants), Decimal(0))
        await conn.execute(
            "UPDATE campaigns SET budget_used = budget_used + $2 WHERE campaign_id = $1", campaign_id, total
        )
    issued_at = datetime.now(UTC)
    policy = ExpiryPolicy(
        kind=ExpiryKind(campaign["expiry_kind"]),
        expires_at=campaign["expiry_at"],
        days=campaign["expiry_days"],
    )
    expiries = [expiry_on_issue(policy, issued_at, g.code["own_expires_at"]) for g in grants]
    order_ids = [g.pending.request.order_id for g in grants]
    code_ids = [g.code["code_id"] for g in grants]
    try:
        # The issuance records (in arrival order), the codes' history and the holds first, then the codes:
        # the foreign key checks then find rows this transaction has locked but not yet updated, which
        # costs them nothing (checking freshly updated rows would lock each of them once more).
        await conn.execute(
            """
            WITH granted AS (
                SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::numeric[], $5::text[])
                              WITH ORDINALITY AS g(code_id, order_id, member_id, value, previous, n)
            ), issued AS (
                INSERT INTO issuances (order_id, code_id, campaign_id, member_id, value, issued_at)
                SELECT order_id, code_id, $6, member_id, value, $7 FROM granted ORDER BY n
            ), history AS (
                INSERT INTO code_events (code_id, action, status, previous_status, actor, order_id)
                SELECT code_id, 'issued', 'issued', previous, $8, order_id FROM granted ORDER BY n
            )
            DELETE FROM holds WHERE order_id = ANY($2::uuid[])
            """,
            code_ids,
            order_ids,
            [g.pending.request.member_id for g in grants],
            [g.value for g in grants],
            [g.code["status"] for g in grants],
            campaign_id,
            issued_at,
            issuance.SYSTEM_ACTOR,
        )
        await conn.execute(
            """
            UPDATE codes c SET status = 'issued', order_id = g.order_id, member_id = g.member_id,
                   issued_at = $4, expires_at = g.expires_at, delivered = false, delivery_failed = false,
                   updated_at = now()
              FROM unnest($1::uuid[], $2::uuid[], $3::text[], $5::timestamptz[])
                   AS g(code_id, order_id, member_id, expires_at)
             WHERE c.code_id = g.code_id
            """,
            code_ids,
            order_ids,
            [g.pending.request.member_id for g in grants],
            issued_at,
            expiries,
        )
    except asyncpg.UniqueViolationError as exc:
        # Another issuer served one of these orders (or took one of these codes) in a transaction we
        # raced with: the retried batch finds its issuance and skips that order.
        raise TransientError("concurrent issuance for an order of the batch") from exc
    events: list[tuple[EventData, Pending]] = []
    for grant, expires_at in zip(grants, expiries, strict=True):
        code = grant.code
        clear = vault.open(code["key_id"], bytes(code["secret"]), bytes(code["lookup_hash"]))
        request = grant.pending.request
        issued = VoucherIssued(
            order_id=request.order_id,
            campaign_id=campaign_id,
            code_id=code["code_id"],
            sealed_code=vault.seal_for_delivery(clear, code["code_id"]),
            masked_code=mask(clear),
            face_value=grant.value,
            currency=campaign["currency"],
            expires_at=expires_at,
        )
        changed = VoucherStatusChanged(
            code_id=code["code_id"],
            campaign_id=campaign_id,
            order_id=request.order_id,
            status=CodeStatus.ISSUED,
            previous_status=CodeStatus(code["status"]),
            expires_at=expires_at,
            remaining_value=grant.value,
        )
        events += [(issued, grant.pending), (changed, grant.pending)]
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
    row = await conn.fetchrow(
        """
        SELECT c.low_stock_threshold AS threshold,
               (SELECT coalesce(sum(n), 0) FROM code_counts k WHERE k.campaign_id = c.campaign_id
                 AND k.status IN ('available', 'recovered') AND NOT k.test)::int AS available
          FROM campaigns c WHERE c.campaign_id = $1 AND NOT c.stock_low_notified AND c.low_stock_threshold > 0
        """,
        campaign_id,
    )
    if row is None or row["available"] > row["threshold"]:
        return None
    # Each grant took one code: before them `available + len(grants)` were left, and the grant that
    # first left `threshold` or fewer is the one the order-by-order path would have reported.
    before = row["available"] + len(grants)
    reported = min(before - 1, row["threshold"])
    crossing = grants[before - reported - 1]
    await conn.execute("UPDATE campaigns SET stock_low_notified = true WHERE campaign_id = $1", campaign_id)
    low = VoucherStockLow(campaign_id=campaign_id, available=reported, threshold=row["threshold"])
    return low, crossing.pending

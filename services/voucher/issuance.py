"""Issuing exactly one code per order, holding orders that cannot get one, serving them FIFO later,
and giving a cancelled order's undelivered code back to the pool.

Exactly-once is enforced by the database: one unreleased issuance per order (and an order that ever had
one is never issued another, but for the fresh code that replaces a recovered delivered one),
`issuances_one_holder_per_code` lets a code be held by one order at a time, `codes.order_id` is
unique, and the pool is read with FOR UPDATE SKIP LOCKED so concurrent issuers never pick one code.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from chassis.db import Connection
from chassis.errors import TransientError
from contracts.envelope import Envelope
from contracts.values import RewardType
from contracts.vouchers import (
    CampaignStatus,
    CodeStatus,
    ExpiryKind,
    ExpiryPolicy,
    VoucherIssued,
    VoucherIssueFailed,
    VoucherStatusChanged,
    VoucherStockLow,
)

from .crypto import CodeVault
from .domain import IssueFailure, expiry_on_issue, issue_blocker, mask
from .events import publish

SYSTEM_ACTOR = "service:voucher"
# (campaign, value, test) → (transaction id, last seq picked in it); only trusted within that transaction.
_pick_cursor: dict[tuple[str, Decimal, bool], tuple[str, int]] = {}


@dataclass(frozen=True)
class OrderRequest:
    order_id: uuid.UUID
    campaign_id: str
    member_id: str
    value: Decimal | None
    correlation_id: str
    test: bool = False
    """A UAT test order: it takes one of the campaign's test codes (never a real one), uses no budget and
    waits in the test orders' own queue."""


async def _hold(
    conn: Connection, req: OrderRequest, reason: IssueFailure, cause: Envelope[Any] | None
) -> IssueFailure:
    inserted = await conn.fetchval(
        """
        INSERT INTO holds (order_id, campaign_id, member_id, value, reason, correlation_id, test)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (order_id) DO UPDATE SET reason = EXCLUDED.reason
        RETURNING xmax = 0
        """,
        req.order_id,
        req.campaign_id,
        req.member_id,
        req.value,
        str(reason),
        req.correlation_id,
        req.test,
    )
    if inserted:
        failed = VoucherIssueFailed(order_id=req.order_id, campaign_id=req.campaign_id, reason=str(reason))
        await publish(conn, [failed], cause=cause, correlation_id=req.correlation_id)
    return reason


async def issue(
    conn: Connection,
    vault: CodeVault,
    req: OrderRequest,
    *,
    cause: Envelope[Any] | None = None,
    from_hold: bool = False,
    replacing: bool = False,
) -> IssueFailure | None:
    """Issue one code to the order (no-op if it has one), or hold it and say why. Runs in the caller's
    transaction, which carries the events with it. `replacing`: the order's delivered code was just
    voided and it gets a fresh one; when none can be issued the failure is only returned (the caller
    undoes the voiding), never held."""
    known = await conn.fetchrow(
        """
        SELECT EXISTS (SELECT 1 FROM issuances WHERE order_id = $1)
               OR EXISTS (SELECT 1 FROM closed_orders WHERE order_id = $1) AS done,
               (SELECT budget IS NOT NULL FROM campaigns WHERE campaign_id = $2) AS budgeted
        """,
        req.order_id,
        req.campaign_id,
    )
    assert known is not None

    async def refuse(reason: IssueFailure) -> IssueFailure:
        return reason if replacing else await _hold(conn, req, reason, cause)

    if known["done"] and not replacing:
        await conn.execute("DELETE FROM holds WHERE order_id = $1", req.order_id)
        return None
    campaign = None
    if known["budgeted"] is not None:
        # Without a budget, issuers share the campaign row and never wait for each other (a status or
        # budget change waits for them); with one, they take turns, since each moves budget_used.
        # The head of the queue comes along: first in, first out while older orders wait.
        lock = "FOR NO KEY UPDATE" if known["budgeted"] else "FOR SHARE"
        campaign = await conn.fetchrow(
            f"""
            SELECT c.*, (SELECT reason FROM holds h WHERE h.campaign_id = c.campaign_id AND h.order_id <> $2
                            AND h.test = $3
                          ORDER BY seq LIMIT 1) AS queue_head
              FROM campaigns c WHERE c.campaign_id = $1 {lock} OF c
            """,
            req.campaign_id,
            req.order_id,
            req.test,
        )
    if campaign is None:
        return await refuse(IssueFailure.UNKNOWN_CAMPAIGN)
    if campaign["reward_type"] == RewardType.POINTS:
        return await refuse(IssueFailure.POINTS_CAMPAIGN)
    blocker = issue_blocker(CampaignStatus(campaign["status"]))
    if blocker is not None:
        return await refuse(blocker)
    if not (from_hold or replacing) and campaign["queue_head"] is not None:
        return await refuse(IssueFailure(campaign["queue_head"]))
    value = req.value or campaign["face_value"]
    # Codes this transaction already issued still sit in the pool index until it commits; starting
    # after the last one it picked keeps a batch of N issuances from scanning N^2 index entries.
    cursor_key = (req.campaign_id, value, req.test)
    xid, after = _pick_cursor.get(cursor_key, ("", 0))
    # Literal predicates, so each kind of order reads its own partial index (codes_pool, codes_test_pool).
    kind = "test" if req.test else "NOT test"
    code = await conn.fetchrow(
        f"""
        SELECT code_id, seq, status, lookup_hash, secret, key_id, own_expires_at,
               pg_current_xact_id()::text AS xid
          FROM codes
         WHERE campaign_id = $1 AND value = $2 AND status IN ('available', 'recovered') AND {kind}
           AND (expires_at IS NULL OR expires_at > now())
           AND seq > CASE WHEN pg_current_xact_id()::text = $3 THEN $4::bigint ELSE 0 END
         ORDER BY seq LIMIT 1
           FOR UPDATE SKIP LOCKED
        """,
        req.campaign_id,
        value,
        xid,
        after,
    )
    if code is None and after:
        _pick_cursor.pop(cursor_key, None)
        return await issue(conn, vault, req, cause=cause, from_hold=from_hold, replacing=replacing)
    if code is None:
        return await refuse(IssueFailure.OUT_OF_STOCK)
    _pick_cursor[cursor_key] = (code["xid"], code["seq"])
    if campaign["budget"] is not None and not req.test:
        budget_ok = await conn.fetchval(
            "UPDATE campaigns SET budget_used = budget_used + $2"
            " WHERE campaign_id = $1 AND budget_used + $2 <= budget RETURNING true",
            req.campaign_id,
            value,
        )
        if not budget_ok:
            return await refuse(IssueFailure.BUDGET_EXHAUSTED)
    issued_at = datetime.now(UTC)
    policy = ExpiryPolicy(
        kind=ExpiryKind(campaign["expiry_kind"]),
        expires_at=campaign["expiry_at"],
        days=campaign["expiry_days"],
    )
    expires_at = expiry_on_issue(policy, issued_at, code["own_expires_at"])
    previous = code["status"]
    try:
        # One round trip: the code, the issuance record, the code's history and the hold, together.
        await conn.execute(
            """
            WITH taken AS (
                UPDATE codes SET status = 'issued', order_id = $2, member_id = $3, issued_at = $4,
                       expires_at = $5, delivered = false, delivery_failed = false, updated_at = now()
                 WHERE code_id = $1
                RETURNING code_id
            ), issued AS (
                INSERT INTO issuances (order_id, code_id, campaign_id, member_id, value, issued_at)
                SELECT $2, code_id, $6, $3, $7, $4 FROM taken
                RETURNING code_id
            ), history AS (
                INSERT INTO code_events (code_id, action, status, previous_status, actor, order_id)
                SELECT code_id, 'issued', 'issued', $8, $9, $2 FROM issued
            )
            DELETE FROM holds WHERE order_id = $2
            """,
            code["code_id"],
            req.order_id,
            req.member_id,
            issued_at,
            expires_at,
            req.campaign_id,
            value,
            previous,
            SYSTEM_ACTOR,
        )
    except asyncpg.UniqueViolationError as exc:
        # Another replica issued to this order (or took this code) in a transaction we raced with:
        # retrying finds its issuance and changes nothing.
        raise TransientError("concurrent issuance for the same order") from exc
    clear = vault.open(code["key_id"], bytes(code["secret"]), bytes(code["lookup_hash"]))
    issued = VoucherIssued(
        order_id=req.order_id,
        campaign_id=req.campaign_id,
        code_id=code["code_id"],
        sealed_code=vault.seal_for_delivery(clear, code["code_id"]),
        masked_code=mask(clear),
        face_value=value,
        currency=campaign["currency"],
        expires_at=expires_at,
    )
    changed = VoucherStatusChanged(
        code_id=code["code_id"],
        campaign_id=req.campaign_id,
        order_id=req.order_id,
        status=CodeStatus.ISSUED,
        previous_status=CodeStatus(previous),
        expires_at=expires_at,
        remaining_value=value,
        test=req.test,
    )
    await publish(conn, [issued, changed], cause=cause, correlation_id=req.correlation_id)
    if campaign["low_stock_threshold"] > 0 and not campaign["stock_low_notified"] and not req.test:
        await _check_stock(conn, req.campaign_id, cause, req.correlation_id)
    return None


async def _check_stock(
    conn: Connection, campaign_id: str, cause: Envelope[Any] | None, correlation_id: str
) -> None:
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
        return
    await conn.execute("UPDATE campaigns SET stock_low_notified = true WHERE campaign_id = $1", campaign_id)
    low = VoucherStockLow(campaign_id=campaign_id, available=row["available"], threshold=row["threshold"])
    await publish(conn, [low], cause=cause, correlation_id=correlation_id)


async def serve_holds(
    conn: Connection, vault: CodeVault, *, campaign_id: str | None = None, limit: int = 200
) -> int:
    """Retry held orders oldest first, per campaign (and its test orders apart) stopping at the first that
    still cannot be served."""
    rows = await conn.fetch(
        "SELECT * FROM holds WHERE ($1::text IS NULL OR campaign_id = $1) ORDER BY seq LIMIT $2"
        " FOR UPDATE SKIP LOCKED",
        campaign_id,
        limit,
    )
    served = 0
    blocked: set[tuple[str, bool]] = set()
    for row in rows:
        queue = (row["campaign_id"], row["test"])
        if queue in blocked:
            continue
        req = OrderRequest(
            row["order_id"],
            row["campaign_id"],
            row["member_id"],
            row["value"],
            row["correlation_id"],
            test=row["test"],
        )
        if await issue(conn, vault, req, from_hold=True) is None:
            served += 1
        else:
            blocked.add(queue)
    return served


async def release(conn: Connection, order_id: uuid.UUID, *, cause: Envelope[Any], reason: str) -> bool:
    """The order was cancelled: forget any hold; an undelivered, unredeemed code goes back to the pool."""
    await conn.execute(
        "INSERT INTO closed_orders (order_id, state) VALUES ($1, 'cancelled') ON CONFLICT DO NOTHING",
        order_id,
    )
    await conn.execute("DELETE FROM holds WHERE order_id = $1", order_id)
    code = await conn.fetchrow(
        "SELECT code_id, campaign_id, status, value, remaining_value, delivered, own_expires_at, test"
        " FROM codes WHERE order_id = $1 AND status <> 'void' FOR UPDATE",
        order_id,
    )
    if (
        code is None
        or code["delivered"]
        or code["status"] != "issued"
        or code["remaining_value"] != code["value"]
    ):
        return False
    await return_to_pool(
        conn,
        code,
        status=CodeStatus.AVAILABLE,
        action="released",
        actor=SYSTEM_ACTOR,
        reason=reason,
        release_reason="order_cancelled",
        order_id=order_id,
        cause=cause,
    )
    return True


async def return_to_pool(
    conn: Connection,
    code: asyncpg.Record,
    *,
    status: CodeStatus,
    action: str,
    actor: str,
    reason: str | None,
    release_reason: str,
    order_id: uuid.UUID | None,
    cause: Envelope[Any] | None = None,
) -> None:
    """Detach a code from its order and make it issuable again; the order's budget share is freed."""
    await conn.execute(
        """
        UPDATE codes SET status = $2, order_id = NULL, member_id = NULL, issued_at = NULL,
               expires_at = own_expires_at, delivered = false, delivery_failed = false, updated_at = now()
         WHERE code_id = $1
        """,
        code["code_id"],
        str(status),
    )
    await detach_from_order(
        conn,
        code,
        status=status,
        action=action,
        actor=actor,
        reason=reason,
        release_reason=release_reason,
        order_id=order_id,
        cause=cause,
    )


async def detach_from_order(
    conn: Connection,
    code: asyncpg.Record,
    *,
    status: CodeStatus,
    action: str,
    actor: str,
    reason: str | None,
    release_reason: str,
    order_id: uuid.UUID | None,
    cause: Envelope[Any] | None = None,
) -> None:
    """What follows a code leaving its order (its row already has `status`): the issuance is released,
    the order's budget share freed (a test code took none), the change recorded in the code's history and
    published."""
    test = bool(code.get("test", False))
    if order_id is not None:
        await conn.execute(
            "UPDATE issuances SET released_at = now(), release_reason = $2"
            " WHERE order_id = $1 AND released_at IS NULL",
            order_id,
            release_reason,
        )
        if not test:
            await conn.execute(
                "UPDATE campaigns SET budget_used = greatest(budget_used - $2, 0) WHERE campaign_id = $1",
                code["campaign_id"],
                code["value"],
            )
    await conn.execute(
        "INSERT INTO code_events (code_id, action, status, previous_status, actor, reason, order_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        code["code_id"],
        action,
        str(status),
        code["status"],
        actor,
        reason,
        order_id,
    )
    changed = VoucherStatusChanged(
        code_id=code["code_id"],
        campaign_id=code["campaign_id"],
        order_id=order_id,
        status=status,
        previous_status=CodeStatus(code["status"]),
        reason=reason,
        expires_at=code["own_expires_at"],
        remaining_value=code["value"],
        test=test,
    )
    await publish(conn, [changed], cause=cause)


async def mark_delivery(conn: Connection, order_id: uuid.UUID, *, delivered: bool) -> None:
    if delivered:
        await conn.execute(
            "UPDATE codes SET delivered = true, delivery_failed = false, updated_at = now()"
            " WHERE order_id = $1 AND status <> 'void'",
            order_id,
        )
        await conn.execute(
            "INSERT INTO closed_orders (order_id, state) VALUES ($1, 'completed') ON CONFLICT DO NOTHING",
            order_id,
        )
    else:
        await conn.execute(
            "UPDATE codes SET delivery_failed = true, updated_at = now()"
            " WHERE order_id = $1 AND status <> 'void'",
            order_id,
        )


async def mark_deliveries(conn: Connection, outcomes: dict[uuid.UUID, bool]) -> None:
    """`mark_delivery` for many orders at once (each order once): True delivered, False failed."""
    delivered = [order_id for order_id, ok in outcomes.items() if ok]
    failed = [order_id for order_id, ok in outcomes.items() if not ok]
    if delivered:
        await conn.execute(
            """
            WITH marked AS (
                UPDATE codes SET delivered = true, delivery_failed = false, updated_at = now()
                 WHERE order_id = ANY($1::uuid[]) AND status <> 'void'
            )
            INSERT INTO closed_orders (order_id, state)
            SELECT unnest($1::uuid[]), 'completed' ON CONFLICT DO NOTHING
            """,
            delivered,
        )
    if failed:
        await conn.execute(
            "UPDATE codes SET delivery_failed = true, updated_at = now()"
            " WHERE order_id = ANY($1::uuid[]) AND status <> 'void'",
            failed,
        )

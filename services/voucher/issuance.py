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
from contracts.envelope import Envelope, EventData
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
from .repository import issuance as repository

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
    inserted = await repository.insert_hold(
        conn,
        order_id=req.order_id,
        campaign_id=req.campaign_id,
        member_id=req.member_id,
        value=req.value,
        reason=str(reason),
        correlation_id=req.correlation_id,
        test=req.test,
    )
    if inserted:
        failed = VoucherIssueFailed(order_id=req.order_id, campaign_id=req.campaign_id, reason=str(reason))
        await publish(conn, [failed], cause=cause, correlation_id=req.correlation_id)
    return reason


@dataclass(frozen=True)
class Grant:
    """A code taken for an order: its row, the value it carries and when it expires."""

    campaign: asyncpg.Record
    code: asyncpg.Record
    value: Decimal
    expires_at: datetime | None


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
    known = await repository.order_and_campaign(conn, req.order_id, req.campaign_id)
    if known["done"] and not replacing:
        await repository.delete_holds(conn, [req.order_id])
        return None
    grant = await _take_code(conn, req, budgeted=known["budgeted"], queued=not (from_hold or replacing))
    if isinstance(grant, IssueFailure):
        return grant if replacing else await _hold(conn, req, grant, cause)
    await publish(conn, issued_events(vault, req, grant), cause=cause, correlation_id=req.correlation_id)
    campaign = grant.campaign
    if campaign["low_stock_threshold"] > 0 and not campaign["stock_low_notified"] and not req.test:
        await _check_stock(conn, req.campaign_id, cause, req.correlation_id)
    return None


async def _take_code(
    conn: Connection, req: OrderRequest, *, budgeted: bool | None, queued: bool
) -> Grant | IssueFailure:
    """Take the campaign's next code for the order, with its share of the budget, or say why not.
    `budgeted` is None for an unknown campaign; `queued`: the order waits behind older held ones."""
    campaign = None
    if budgeted is not None:
        # The head of the queue comes along: first in, first out while older orders wait.
        campaign = await repository.lock_campaign(
            conn, req.campaign_id, req.order_id, test=req.test, budgeted=budgeted
        )
    refusal = _refusal(campaign, queued=queued)
    if refusal is not None:
        return refusal
    assert campaign is not None
    value = req.value or campaign["face_value"]
    code = await _pick_code(conn, req, value)
    if code is None:
        return IssueFailure.OUT_OF_STOCK
    budgeted_order = campaign["budget"] is not None and not req.test
    if budgeted_order and not await repository.take_budget(conn, req.campaign_id, value):
        return IssueFailure.BUDGET_EXHAUSTED
    issued_at = datetime.now(UTC)
    expires_at = expiry_on_issue(expiry_policy(campaign), issued_at, code["own_expires_at"])
    try:
        await repository.issue_code(
            conn,
            code_id=code["code_id"],
            order_id=req.order_id,
            member_id=req.member_id,
            campaign_id=req.campaign_id,
            value=value,
            issued_at=issued_at,
            expires_at=expires_at,
            previous_status=code["status"],
            actor=SYSTEM_ACTOR,
        )
    except asyncpg.UniqueViolationError as exc:
        # Another replica issued to this order (or took this code) in a transaction we raced with:
        # retrying finds its issuance and changes nothing.
        raise TransientError("concurrent issuance for the same order") from exc
    return Grant(campaign, code, value, expires_at)


def _refusal(campaign: asyncpg.Record | None, *, queued: bool) -> IssueFailure | None:
    if campaign is None:
        return IssueFailure.UNKNOWN_CAMPAIGN
    if campaign["reward_type"] == RewardType.POINTS:
        return IssueFailure.POINTS_CAMPAIGN
    blocker = issue_blocker(CampaignStatus(campaign["status"]))
    if blocker is not None:
        return blocker
    if queued and campaign["queue_head"] is not None:
        return IssueFailure(campaign["queue_head"])
    return None


async def _pick_code(conn: Connection, req: OrderRequest, value: Decimal) -> asyncpg.Record | None:
    """The pool's next issuable code for the order, locked for this transaction."""
    # Codes this transaction already issued still sit in the pool index until it commits; starting
    # after the last one it picked keeps a batch of N issuances from scanning N^2 index entries.
    cursor_key = (req.campaign_id, value, req.test)
    xid, after = _pick_cursor.get(cursor_key, ("", 0))
    code = await repository.pick_code(conn, req.campaign_id, value, test=req.test, xid=xid, after=after)
    if code is None and after:
        _pick_cursor.pop(cursor_key, None)
        code = await repository.pick_code(conn, req.campaign_id, value, test=req.test, xid="", after=0)
    if code is not None:
        _pick_cursor[cursor_key] = (code["xid"], code["seq"])
    return code


def expiry_policy(campaign: asyncpg.Record) -> ExpiryPolicy:
    return ExpiryPolicy(
        kind=ExpiryKind(campaign["expiry_kind"]),
        expires_at=campaign["expiry_at"],
        days=campaign["expiry_days"],
    )


def issued_events(vault: CodeVault, req: OrderRequest, grant: Grant) -> list[EventData]:
    """`voucher.issued` (the code sealed for delivery) and the code's status change."""
    code = grant.code
    clear = vault.open(code["key_id"], bytes(code["secret"]), bytes(code["lookup_hash"]))
    issued = VoucherIssued(
        order_id=req.order_id,
        campaign_id=req.campaign_id,
        code_id=code["code_id"],
        sealed_code=vault.seal_for_delivery(clear, code["code_id"]),
        masked_code=mask(clear),
        face_value=grant.value,
        currency=grant.campaign["currency"],
        expires_at=grant.expires_at,
    )
    changed = VoucherStatusChanged(
        code_id=code["code_id"],
        campaign_id=req.campaign_id,
        order_id=req.order_id,
        status=CodeStatus.ISSUED,
        previous_status=CodeStatus(code["status"]),
        expires_at=grant.expires_at,
        remaining_value=grant.value,
        test=req.test,
    )
    return [issued, changed]


async def _check_stock(
    conn: Connection, campaign_id: str, cause: Envelope[Any] | None, correlation_id: str
) -> None:
    row = await repository.low_stock(conn, campaign_id)
    if row is None or row["available"] > row["threshold"]:
        return
    await repository.mark_stock_low_notified(conn, campaign_id)
    low = VoucherStockLow(campaign_id=campaign_id, available=row["available"], threshold=row["threshold"])
    await publish(conn, [low], cause=cause, correlation_id=correlation_id)


async def serve_holds(
    conn: Connection, vault: CodeVault, *, campaign_id: str | None = None, limit: int = 200
) -> int:
    """Retry held orders oldest first, per campaign (and its test orders apart) stopping at the first that
    still cannot be served."""
    rows = await repository.lock_holds(conn, campaign_id, limit)
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
    await repository.close_orders(conn, [order_id], "cancelled")
    await repository.delete_holds(conn, [order_id])
    code = await repository.lock_code_of_order(conn, order_id)
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
        Detachment(
            status=CodeStatus.AVAILABLE,
            action="released",
            actor=SYSTEM_ACTOR,
            reason=reason,
            release_reason="order_cancelled",
            order_id=order_id,
            cause=cause,
        ),
    )
    return True


@dataclass(frozen=True)
class Detachment:
    """A code leaving its order: the status it ends in, and what its history and the events say."""

    status: CodeStatus
    action: str
    actor: str
    reason: str | None
    release_reason: str
    order_id: uuid.UUID | None
    cause: Envelope[Any] | None = None


async def return_to_pool(conn: Connection, code: asyncpg.Record, leaving: Detachment) -> None:
    """Detach a code from its order and make it issuable again; the order's budget share is freed."""
    await repository.return_code_to_pool(conn, code["code_id"], str(leaving.status))
    await detach_from_order(conn, code, leaving)


async def detach_from_order(conn: Connection, code: asyncpg.Record, leaving: Detachment) -> None:
    """What follows a code leaving its order (its row already has `leaving.status`): the issuance is
    released, the order's budget share freed (a test code took none), the change recorded in the code's
    history and published."""
    test = bool(code.get("test", False))
    order_id, status = leaving.order_id, leaving.status
    if order_id is not None:
        await repository.release_issuance(conn, order_id, leaving.release_reason)
        if not test:
            await repository.free_budget(conn, code["campaign_id"], code["value"])
    await repository.record_code_event(
        conn,
        code["code_id"],
        action=leaving.action,
        status=str(status),
        previous_status=code["status"],
        actor=leaving.actor,
        reason=leaving.reason,
        order_id=order_id,
    )
    changed = VoucherStatusChanged(
        code_id=code["code_id"],
        campaign_id=code["campaign_id"],
        order_id=order_id,
        status=status,
        previous_status=CodeStatus(code["status"]),
        reason=leaving.reason,
        expires_at=code["own_expires_at"],
        remaining_value=code["value"],
        test=test,
    )
    await publish(conn, [changed], cause=leaving.cause)


async def mark_delivery(conn: Connection, order_id: uuid.UUID, *, delivered: bool) -> None:
    await mark_deliveries(conn, {order_id: delivered})


async def mark_deliveries(conn: Connection, outcomes: dict[uuid.UUID, bool]) -> None:
    """Record delivery outcomes of many orders at once (each order once): True delivered, False failed."""
    delivered = [order_id for order_id, ok in outcomes.items() if ok]
    failed = [order_id for order_id, ok in outcomes.items() if not ok]
    if delivered:
        await repository.mark_delivered(conn, delivered)
    if failed:
        await repository.mark_delivery_failed(conn, failed)

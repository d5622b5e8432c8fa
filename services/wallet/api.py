"""HTTP in: the member dashboard (wallet, history), staff adjustments and reversals, freezing, and the
member audit log. Members see only their own account; staff any."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self, cast

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from chassis.approvals import (
    PENDING_RESPONSE,
    Approval,
    ApprovalAction,
    Approvals,
    pending_answer,
    pending_like,
)
from chassis.audit import append_audit
from chassis.auth import STAFF_ROLES, Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.inputs import INT64_MAX
from chassis.models import model_from
from chassis.problems import Problem, register_error
from contracts.values import Identifier, PositivePoints
from contracts.wallet import EntryType, WalletReference

from . import domain
from . import repository as repo
from .domain import Posting, WalletStatus, expiring_between, soon_window, upcoming_expiries
from .ledger import Ledger, Posted
from .member_audit import append_member_audit, list_member_audit, verify_member_audit
from .readmodel import member_order, member_orders
from .views import (
    History,
    LedgerEntryView,
    MemberAuditEntryView,
    MemberAuditPage,
    MemberAuditVerification,
    RevealPointer,
    WalletStatusView,
    WalletView,
)

for _error, _status in (
    (domain.UnknownMember, 404),
    (domain.EntryNotFound, 404),
    (domain.InsufficientPoints, 409),
    (domain.WalletFrozen, 409),
    (domain.IdempotencyKeyReused, 409),
    (domain.NotReversible, 409),
    (domain.AlreadyReversed, 409),
    (domain.ReversalExceedsEntry, 422),
    (domain.UnsupportedEntryType, 422),
):
    register_error(_error, _status, _error.code)

MEMBER_OR_STAFF = (Role.MEMBER, *sorted(STAFF_ROLES))


def entry_view(entry: repo.Entry) -> LedgerEntryView:
    """Points as decimal strings; the reference with only the ids it holds."""
    return model_from(
        LedgerEntryView,
        entry,
        amount=str(entry.amount),
        balance_after=str(entry.balance_after),
        reference=entry.reference.model_dump(mode="json", exclude_none=True),
    )


ADJUSTERS = (Role.ADMIN, Role.FINANCE)
REVEALERS = (Role.ADMIN, Role.SUPPORT_AGENT, Role.MEMBER)
ADJUSTMENT_APPROVAL = "wallet_adjustment"


@dataclass(frozen=True)
class WalletContext:
    """What the routes share, as `build_spec` made it: the ledger (and its clock) and the policies."""

    ledger: Ledger
    approvals: Approvals
    expiring_soon_days: int
    adjustment_approval_above: int


def wallet_context(request: Request) -> WalletContext:
    return cast(WalletContext, request.app.state.runtime.spec.context)


Ctx = Annotated[WalletContext, Depends(wallet_context)]


def staff_actor(principal: Principal, admitted: tuple[Role, ...]) -> str:
    role = next(r for r in admitted if r in principal.roles)
    return f"{role.value}:{principal.sub}"


class AdjustmentRequest(BaseModel):
    """A manual credit, or the reversal of (part of) one credit."""

    model_config = ConfigDict(extra="forbid")

    entry_type: Literal["manual_adjustment", "reversal"] = "manual_adjustment"
    amount: PositivePoints | None = Field(
        default=None, description="points; a reversal defaults to the whole entry it reverses"
    )
    reverses_entry_id: uuid.UUID | None = Field(default=None, description="for a reversal: the credit")
    reason_code: Identifier = Field(description="machine-readable, e.g. `goodwill`, `correction`")
    reason: str = Field(min_length=1, max_length=2000, description="why, in words, for the audit log")
    idempotency_key: Identifier | None = Field(
        default=None, description="repeat the request safely; also accepted as the Idempotency-Key header"
    )
    reference: WalletReference = Field(default_factory=WalletReference)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.entry_type == "reversal" and self.reverses_entry_id is None:
            raise ValueError("a reversal names the entry it reverses in reverses_entry_id")
        if self.entry_type == "manual_adjustment":
            if self.reverses_entry_id is not None:
                raise ValueError("reverses_entry_id belongs to a reversal")
            if self.amount is None:
                raise ValueError("a manual adjustment needs an amount")
        return self


class RevealRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000, description="why an agent looks at the code")


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


async def _amount_of(conn: Connection, body: AdjustmentRequest) -> int:
    """The points the request moves: its amount, or for a reversal without one the whole entry."""
    if body.amount is not None:
        return body.amount
    assert body.reverses_entry_id is not None
    target = await repo.entry_by_id(conn, body.reverses_entry_id)
    if target is None:
        raise domain.EntryNotFound(f"no ledger entry {body.reverses_entry_id}")
    return target.amount


async def _post_adjustment(
    conn: Connection,
    ledger: Ledger,
    member_id: str,
    body: AdjustmentRequest,
    amount: int,
    *,
    actor: str,
    key: str,
    approval_id: uuid.UUID | None = None,
) -> Posted:
    posting = Posting(
        member_id=member_id,
        entry_type=EntryType(body.entry_type),
        amount=amount,
        reason_code=body.reason_code,
        reason=body.reason,
        actor=actor,
        idempotency_key=key,
        reference=body.reference,
        reverses_entry_id=body.reverses_entry_id,
    )
    approved = {} if approval_id is None else {"approval_id": str(approval_id)}
    posted = await ledger.post(conn, posting, audit_details={"staff_initiated": True, **approved})
    if not posted.replayed:
        await append_audit(
            conn,
            actor=actor,
            action=f"wallet.{body.entry_type}",
            subject_type="member",
            subject_id=member_id,
            details={"entry_id": str(posted.entry.entry_id), "amount": str(amount), "reason": body.reason}
            | approved,
        )
    return posted


def adjustment_approval(ledger: Ledger) -> ApprovalAction:
    """An adjustment above the limit, posted as the maker asked once another person approves it."""

    async def perform(conn: Connection, approval: Approval) -> dict[str, Any]:
        body = AdjustmentRequest.model_validate(approval.request["body"])
        member_id = approval.request["member_id"]
        posted = await _post_adjustment(
            conn,
            ledger,
            member_id,
            body,
            await _amount_of(conn, body),
            actor=approval.maker,
            key=approval.request["idempotency_key"],
            approval_id=approval.approval_id,
        )
        return {"entry_id": str(posted.entry.entry_id), "balance_after": str(posted.entry.balance_after)}

    return ApprovalAction(ADJUSTMENT_APPROVAL, perform)


router = APIRouter(tags=["wallet"])
member_or_staff = require_roles(*MEMBER_OR_STAFF)


def member_account(member_id: str, principal: Principal = Depends(member_or_staff)) -> str:
    """The member of the path, once the caller may see that account (members only their own)."""
    principal.ensure_may_access_member(member_id)
    return member_id


MemberAccount = Annotated[str, Depends(member_account)]


@router.get("/v1/members/{member_id}/wallet", response_model=WalletView)
async def wallet(ctx: Ctx, member_id: MemberAccount, pool: DbPool) -> dict[str, Any]:
    """Balance, status and points expiring soon (and every upcoming expiry)."""
    now = ctx.ledger.clock()
    async with pool.acquire() as conn:
        found = await repo.get_wallet(conn, member_id)
        lots = await repo.open_lots(conn, member_id)
    start, end = soon_window(now, ctx.expiring_soon_days)
    soon = expiring_between(lots, start, end)
    upcoming = upcoming_expiries(lots, now)
    return {
        "member_id": member_id,
        "balance": str(found.balance if found else 0),
        "status": (found.status if found else WalletStatus.ACTIVE).value,
        "known": found is not None,
        "as_of": now.isoformat(),
        "expiring_soon": {
            "days": ctx.expiring_soon_days,
            "points": str(sum(e.points for e in soon)),
            "lots": [{"expires_at": e.expires_at.isoformat(), "points": str(e.points)} for e in soon],
        },
        "expiries": [{"expires_at": e.expires_at.isoformat(), "points": str(e.points)} for e in upcoming],
    }


@router.get("/v1/members/{member_id}/history", response_model=History)
async def history(
    member_id: MemberAccount,
    pool: DbPool,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_seq: Annotated[
        int | None, Query(ge=1, le=INT64_MAX, description="entries older than this one")
    ] = None,
) -> dict[str, Any]:
    """Ledger entries (newest first) and every reward order with its delivery status."""
    async with pool.acquire() as conn:
        entries = await repo.member_entries(conn, member_id, before_seq, limit)
        orders = await member_orders(conn, member_id, limit)
    return {
        "member_id": member_id,
        "entries": [entry_view(e) for e in entries],
        "next_before_seq": entries[-1].member_seq if len(entries) == limit else None,
        "orders": orders,
    }


@router.post(
    "/v1/members/{member_id}/adjustments",
    status_code=201,
    response_model=LedgerEntryView,
    responses=PENDING_RESPONSE,
)
async def adjust(
    ctx: Ctx,
    member_id: str,
    body: AdjustmentRequest,
    pool: DbPool,
    response: Response,
    principal: Principal = Depends(require_roles(*ADJUSTERS)),
    idempotency_key_header: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Any:
    """Post a manual adjustment (credit) or a reversal; repeating the same key returns the same entry.
    More points than the approval limit wait for a second person: 202 with the pending approval."""
    actor = staff_actor(principal, ADJUSTERS)
    key = body.idempotency_key or idempotency_key_header or f"http:{uuid.uuid4()}"
    async with pool.acquire() as conn, conn.transaction():
        amount = await _amount_of(conn, body)
        if amount > ctx.adjustment_approval_above and await repo.entry_by_key(conn, key) is None:
            waiting = await pending_like(conn, ADJUSTMENT_APPROVAL, {"idempotency_key": key})
            if waiting is not None:  # the same request again: the approval it already waits for
                return pending_answer(waiting)
            pending = await ctx.approvals.request(
                conn,
                kind=ADJUSTMENT_APPROVAL,
                subject_id=member_id,
                summary=f"{body.entry_type.replace('_', ' ')} of {amount} points for member {member_id}",
                request={
                    "member_id": member_id,
                    "idempotency_key": key,
                    "body": body.model_dump(mode="json", exclude_none=True),
                },
                principal=principal,
                maker=actor,
                reason=body.reason,
            )
            return pending_answer(pending)
        posted = await _post_adjustment(conn, ctx.ledger, member_id, body, amount, actor=actor, key=key)
    if posted.replayed:
        response.status_code = 200
    return entry_view(posted.entry)


@dataclass(frozen=True)
class _StatusChangeRequest:
    """An admin's request to freeze or unfreeze a member's wallet, with the reason given."""

    ctx: WalletContext
    pool: asyncpg.Pool
    member_id: str
    principal: Principal
    reason: str

    async def to(self, status: WalletStatus) -> dict[str, Any]:
        """Set the wallet's status, noted in the member's audit log and the service's; no-op if already so."""
        actor = staff_actor(self.principal, (Role.ADMIN,))
        async with self.pool.acquire() as conn, conn.transaction():
            found = await repo.lock_wallet(conn, self.member_id)
            if found is None:
                raise domain.UnknownMember(f"member {self.member_id} has no wallet")
            if found.status is not status:
                now = self.ctx.ledger.clock()
                await repo.set_wallet_status(conn, self.member_id, status, now)
                action = "wallet_frozen" if status is WalletStatus.FROZEN else "wallet_unfrozen"
                await append_member_audit(
                    conn,
                    member_id=self.member_id,
                    actor=actor,
                    action=action,
                    occurred_at=now,
                    details={"reason": self.reason},
                )
                await append_audit(
                    conn,
                    actor=actor,
                    action=f"wallet.{action}",
                    subject_type="member",
                    subject_id=self.member_id,
                    details={"reason": self.reason},
                )
        return {"member_id": self.member_id, "status": status.value}


async def _status_change_request(
    ctx: Ctx,
    member_id: str,
    body: StatusChange,
    pool: DbPool,
    principal: Principal = Depends(require_roles(Role.ADMIN)),
) -> _StatusChangeRequest:
    return _StatusChangeRequest(ctx, pool, member_id, principal, body.reason)


StatusChangeRequest = Annotated[_StatusChangeRequest, Depends(_status_change_request)]


@router.post("/v1/members/{member_id}/freeze", response_model=WalletStatusView)
async def freeze(change: StatusChangeRequest) -> dict[str, Any]:
    """Freeze the wallet: debit requests are refused with `wallet_frozen` until it is unfrozen."""
    return await change.to(WalletStatus.FROZEN)


@router.post("/v1/members/{member_id}/unfreeze", response_model=WalletStatusView)
async def unfreeze(change: StatusChangeRequest) -> dict[str, Any]:
    return await change.to(WalletStatus.ACTIVE)


@router.get("/v1/members/{member_id}/audit", response_model=MemberAuditPage)
async def audit(
    member_id: MemberAccount,
    pool: DbPool,
    after_seq: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    """Every action against the member's account, oldest first, with each entry's hash link."""
    async with pool.acquire() as conn:
        entries = await list_member_audit(conn, member_id, after_seq=after_seq, limit=limit)
    return {
        "member_id": member_id,
        "entries": [model_from(MemberAuditEntryView, e) for e in entries],
        "next_after_seq": entries[-1].seq if len(entries) == limit else None,
    }


@router.post("/v1/members/{member_id}/orders/{order_id}/reveal", response_model=RevealPointer)
async def reveal(
    ctx: Ctx,
    member_id: str,
    order_id: uuid.UUID,
    pool: DbPool,
    body: RevealRequest | None = None,
    principal: Principal = Depends(require_roles(*REVEALERS)),
) -> dict[str, Any]:
    """Where to see a delivered code in full. The wallet never holds clear codes: this records the
    reveal in the member's audit log and points to the voucher service's own audited reveal."""
    principal.ensure_may_access_member(member_id)
    actor = staff_actor(principal, REVEALERS)
    async with pool.acquire() as conn, conn.transaction():
        order = await member_order(conn, member_id, order_id)
        if order is None or order["reveal"] is None:
            raise Problem(404, "no_revealable_code", detail="The member has no delivered code on that order.")
        details = {"order_id": str(order_id), "booking_id": order["booking_id"]}
        details |= {"masked_code": order["masked_code"]}
        if body is not None and body.reason:
            details["reason"] = body.reason
        await append_member_audit(
            conn,
            member_id=member_id,
            actor=actor,
            action="code_reveal_requested",
            occurred_at=ctx.ledger.clock(),
            details=details,
        )
    return {"order_id": str(order_id), "masked_code": order["masked_code"], "reveal": order["reveal"]}


@router.get("/v1/members/{member_id}/audit/verify", response_model=MemberAuditVerification)
async def verify(member_id: MemberAccount, pool: DbPool) -> dict[str, Any]:
    """Recompute the member's chain; `first_broken_seq` names the first entry that does not hold."""
    async with pool.acquire() as conn:
        result = await verify_member_audit(conn, member_id)
    return {
        "member_id": member_id,
        "ok": result.ok,
        "entries_verified": result.entries,
        "first_broken_seq": result.first_broken_seq,
        "reason": result.reason,
        "head_hash": result.head_hash,
    }

"""Maker-checker approvals: an action above its threshold waits for a second person.

A service registers the kinds of action it gates (`ApprovalAction`: how to perform it, and optionally
what to undo on rejection and what to do after the commit) in one `Approvals` registry. A route that
finds its action above the threshold calls `Approvals.request` in its own transaction instead of
acting: the request (its body, maker, reason, time) is stored in the schema's `approvals` table
(chassis migration 0005), audited, and announced on `approval.requested`; the maker is answered 202
with the approval (`pending_answer`).

`approvals_router` serves `GET /v1/approvals` (filter by `status`, `kind`), `GET /v1/approvals/{id}`,
`POST /v1/approvals/{id}/approve` and `POST /v1/approvals/{id}/reject` (body `reason`). Approving
locks the approval, performs the action and marks it approved in one transaction, with its audit
entry and its `approval.decided` event, so the action happens exactly once: a second approval finds
it decided (409). Rejecting records the reason and performs nothing.

Who may decide: `admin`, or anyone holding the `approver` role (a permission given beside a job role:
`roles: ["ops", "approver"]`). Nobody approves their own request: the maker's token subject is compared
with the approver's (403 `maker_cannot_approve`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final

import asyncpg
import structlog
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from chassis.audit import append_audit, canonical_json
from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.inputs import Identifier, Text
from chassis.models import model_from
from chassis.outbox import OutgoingEvent, add_to_outbox
from chassis.problems import Problem
from contracts.approvals import ApprovalDecided, ApprovalDecision, ApprovalRequested
from contracts.envelope import Envelope, EventData
from contracts.registry import for_payload

DECIDER_ROLES: Final = (Role.ADMIN, Role.APPROVER)
READER_ROLES: Final = (Role.ADMIN, Role.APPROVER, Role.AUDITOR, Role.OPS, Role.FINANCE, Role.HRIS)
SUBJECT_TYPE: Final = "approval"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Approval:
    approval_id: uuid.UUID
    kind: str
    subject_id: str
    summary: str
    request: dict[str, Any]
    maker_sub: str
    maker: str
    reason: str | None
    status: ApprovalStatus
    created_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
    result: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: asyncpg.Record) -> Approval:
        """The approval a row of `_COLUMNS` holds (its JSON columns read as text)."""
        fields = dict(row)
        result = fields["result"]
        return cls(
            **{
                **fields,
                "request": json.loads(fields["request"]),
                "status": ApprovalStatus(fields["status"]),
                "result": None if result is None else json.loads(result),
            }
        )


Perform = Callable[[Connection, Approval], Awaitable[dict[str, Any]]]
"""Performs (or undoes, on rejection) an approved action in the approval's transaction; returns what it
did, kept as the approval's `result`."""
AfterCommit = Callable[[asyncpg.Pool, Approval], Awaitable[None]]
"""Work that follows a committed decision outside its transaction (wake a worker, serve held orders)."""


@dataclass(frozen=True)
class ApprovalAction:
    """One kind of gated action a service knows how to perform once it is approved."""

    kind: str
    perform: Perform
    on_reject: Perform | None = None
    after_approval: AfterCommit | None = None


class ApprovalNotFound(LookupError):
    pass


_COLUMNS = (
    "approval_id, kind, subject_id, summary, request::text AS request, maker_sub, maker, reason, status,"
    " created_at, decided_by, decided_at, decision_reason, result::text AS result"
)


def decider_actor(principal: Principal) -> str:
    role = Role.ADMIN if Role.ADMIN in principal.roles else Role.APPROVER
    return f"{role.value}:{principal.sub}"


class Approvals:
    """A service's registry of gated action kinds, and the one way to ask for, approve and reject them."""

    def __init__(self, service: str, actions: Sequence[ApprovalAction]) -> None:
        self.service = service
        self._actions = {action.kind: action for action in actions}
        if len(self._actions) != len(actions):
            raise ValueError("two approval actions share a kind")

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._actions)

    def _action(self, kind: str) -> ApprovalAction:
        try:
            return self._actions[kind]
        except KeyError:
            raise ValueError(f"{self.service} has no approval action {kind!r}") from None

    async def request(
        self,
        conn: Connection,
        *,
        kind: str,
        subject_id: str,
        summary: str,
        request: Mapping[str, Any],
        principal: Principal,
        maker: str,
        reason: str | None,
    ) -> Approval:
        """Store a pending approval in the caller's transaction, audit it and announce it."""
        self._action(kind)
        row = await conn.fetchrow(
            f"""
            INSERT INTO approvals (approval_id, kind, subject_id, summary, request, maker_sub, maker, reason)
            VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8)
            RETURNING {_COLUMNS}
            """,  # noqa: S608 -- columns are a module constant; values are bind parameters
            uuid.uuid4(),
            kind,
            subject_id,
            summary[:2000],
            canonical_json(request),
            principal.sub,
            maker,
            reason,
        )
        assert row is not None
        approval = Approval.of(row)
        await append_audit(
            conn,
            actor=maker,
            action="approval.requested",
            subject_type=SUBJECT_TYPE,
            subject_id=str(approval.approval_id),
            details={"kind": kind, "subject_id": subject_id, "summary": approval.summary, "reason": reason},
        )
        requested = model_from(
            ApprovalRequested, approval, service=self.service, requested_at=approval.created_at
        )
        await self._publish(conn, requested)
        return approval

    async def approve(
        self, pool: asyncpg.Pool, approval_id: uuid.UUID, principal: Principal, *, note: str | None = None
    ) -> Approval:
        """Perform the action once and mark it approved, in one transaction; then its after-work."""
        async with pool.acquire() as conn, conn.transaction():
            current = await self._lock_pending(conn, approval_id, principal, verb="approve")
            result = await self._action(current.kind).perform(conn, current)
            decided = await self._decide(conn, current, principal, ApprovalStatus.APPROVED, note, result)
        after = self._action(decided.kind).after_approval
        if after is not None:
            await after(pool, decided)
        return decided

    async def reject(
        self, pool: asyncpg.Pool, approval_id: uuid.UUID, principal: Principal, *, reason: str
    ) -> Approval:
        """Record the rejection and its reason; the action is not performed."""
        async with pool.acquire() as conn, conn.transaction():
            current = await self._lock_pending(conn, approval_id, principal, verb="reject")
            undo = self._action(current.kind).on_reject
            result = await undo(conn, current) if undo is not None else None
            return await self._decide(conn, current, principal, ApprovalStatus.REJECTED, reason, result)

    async def _lock_pending(
        self, conn: Connection, approval_id: uuid.UUID, principal: Principal, *, verb: str
    ) -> Approval:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM approvals WHERE approval_id = $1 FOR UPDATE",  # noqa: S608 -- columns are a module constant; values are bind parameters
            approval_id,
        )
        if row is None:
            raise Problem(404, "approval_not_found", detail=f"No approval {approval_id}.")
        current = Approval.of(row)
        if current.status is not ApprovalStatus.PENDING:
            raise Problem(
                409,
                "approval_already_decided",
                detail=f"Approval {approval_id} was already {current.status.value} by {current.decided_by}.",
            )
        if current.maker_sub == principal.sub:
            raise Problem(
                403,
                "maker_cannot_approve",
                detail=f"You asked for this action: another approver must {verb} it.",
            )
        return current

    async def _decide(
        self,
        conn: Connection,
        current: Approval,
        principal: Principal,
        status: ApprovalStatus,
        reason: str | None,
        result: dict[str, Any] | None,
    ) -> Approval:
        actor = decider_actor(principal)
        row = await conn.fetchrow(
            f"""
            UPDATE approvals SET status = $2, decided_by = $3, decided_at = clock_timestamp(),
                   decision_reason = $4, result = $5::text::jsonb
             WHERE approval_id = $1
            RETURNING {_COLUMNS}
            """,  # noqa: S608 -- columns are a module constant; values are bind parameters
            current.approval_id,
            status.value,
            actor,
            reason,
            None if result is None else canonical_json(result),
        )
        assert row is not None
        decided = Approval.of(row)
        await append_audit(
            conn,
            actor=actor,
            action=f"approval.{status.value}",
            subject_type=SUBJECT_TYPE,
            subject_id=str(decided.approval_id),
            details={
                "kind": decided.kind,
                "subject_id": decided.subject_id,
                "maker": decided.maker,
                "reason": reason,
                "result": result,
            },
        )
        decision = ApprovalDecision(status.value)
        await self._publish(
            conn, model_from(ApprovalDecided, decided, service=self.service, decision=decision, reason=reason)
        )
        return decided

    async def _publish(self, conn: Connection, data: EventData) -> None:
        spec = for_payload(data)
        correlation = structlog.contextvars.get_contextvars().get("correlation_id")
        envelope = Envelope.new(
            event_type=spec.name, producer=self.service, data=data, correlation_id=correlation
        )
        await add_to_outbox(conn, [OutgoingEvent(key=spec.key_of(data), envelope=envelope)])


async def load_approval(conn: Connection, approval_id: uuid.UUID) -> Approval | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM approvals WHERE approval_id = $1", approval_id)  # noqa: S608 -- columns are a module constant; values are bind parameters
    return None if row is None else Approval.of(row)


async def pending_like(conn: Connection, kind: str, request: Mapping[str, Any]) -> Approval | None:
    """The oldest pending approval of `kind` whose request holds every item of `request` (say the same
    idempotency key), so a repeated request answers with the approval it already waits for."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM approvals WHERE status = 'pending' AND kind = $1"  # noqa: S608 -- columns are a module constant; values are bind parameters
        " AND request @> $2::text::jsonb ORDER BY created_at LIMIT 1",
        kind,
        canonical_json(request),
    )
    return None if row is None else Approval.of(row)


async def list_approvals(
    conn: Connection,
    *,
    status: ApprovalStatus | None,
    kind: str | None,
    after: uuid.UUID | None,
    limit: int,
) -> list[Approval]:
    """Oldest first (the longest waiting on top), a page at a time after the approval `after`."""
    rows = await conn.fetch(
        f"""
        SELECT {_COLUMNS} FROM approvals
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2)
           AND ($3::uuid IS NULL OR (created_at, approval_id) >
                (SELECT created_at, approval_id FROM approvals WHERE approval_id = $3))
         ORDER BY created_at, approval_id LIMIT $4
        """,  # noqa: S608 -- columns are a module constant; values are bind parameters
        None if status is None else status.value,
        kind,
        after,
        limit,
    )
    return [Approval.of(r) for r in rows]


# HTTP


class ApprovalLinks(BaseModel):
    self: str
    approve: str
    reject: str


class ApprovalView(BaseModel):
    """An action waiting for (or decided by) a second person."""

    approval_id: uuid.UUID
    kind: str
    subject_id: str
    summary: str
    request: dict[str, Any] = Field(description="the maker's request, performed as it is on approval")
    maker: str
    maker_sub: str = Field(description="the maker's token subject: the one person who may not decide it")
    reason: str | None
    status: ApprovalStatus
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    result: dict[str, Any] | None = Field(description="what the approved action did")
    links: ApprovalLinks

    @classmethod
    def of(cls, approval: Approval) -> ApprovalView:
        location = f"/v1/approvals/{approval.approval_id}"
        links = ApprovalLinks(self=location, approve=f"{location}/approve", reject=f"{location}/reject")
        return model_from(cls, approval, links=links)


class ApprovalPage(BaseModel):
    items: list[ApprovalView]
    next_after: uuid.UUID | None = Field(description="pass as `after` for the next page; null on the last")


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text | None = Field(default=None, description="the approver's note, kept with the decision")


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[Text, Field(min_length=1)] = Field(description="why it is rejected")


PENDING_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    202: {"model": ApprovalView, "description": "Above the approval threshold: waits for a second person"}
}
"""`responses=` for a route that may answer 202 with a pending approval instead of acting."""


def pending_answer(approval: Approval) -> JSONResponse:
    """The maker's answer: 202, the pending approval, and where to follow it."""
    view = ApprovalView.of(approval)
    return JSONResponse(view.model_dump(mode="json"), status_code=202, headers={"Location": view.links.self})


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool | None = request.app.state.runtime.pool
    if pool is None:
        raise RuntimeError("the service runtime has no database pool yet")
    return pool


def approvals_router(approvals: Approvals) -> APIRouter:
    """The four approval routes over one service's registry; the service mounts them with its routers."""
    router = APIRouter(prefix="/v1/approvals", tags=["approvals"])
    _add_reading_routes(router, approvals)
    _add_deciding_routes(router, approvals)
    return router


def _add_reading_routes(router: APIRouter, approvals: Approvals) -> None:
    reader = require_roles(*READER_ROLES)

    @router.get(
        "", summary="Approvals, oldest first, filtered by status and kind", response_model=ApprovalPage
    )
    async def list_all(
        request: Request,
        _: Principal = Depends(reader),
        status: ApprovalStatus | None = None,
        kind: Identifier | None = Query(None, description=f"one of: {', '.join(approvals.kinds)}"),
        after: Annotated[uuid.UUID | None, Query(description="the last approval id seen")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> ApprovalPage:
        async with _pool(request).acquire() as conn:
            found = await list_approvals(conn, status=status, kind=kind, after=after, limit=limit)
        return ApprovalPage(
            items=[ApprovalView.of(a) for a in found],
            next_after=found[-1].approval_id if len(found) == limit else None,
        )

    @router.get(
        "/{approval_id}", summary="One approval with its request and decision", response_model=ApprovalView
    )
    async def get_one(
        approval_id: uuid.UUID, request: Request, _: Principal = Depends(reader)
    ) -> ApprovalView:
        async with _pool(request).acquire() as conn:
            found = await load_approval(conn, approval_id)
        if found is None:
            raise Problem(404, "approval_not_found", detail=f"No approval {approval_id}.")
        return ApprovalView.of(found)


def _add_deciding_routes(router: APIRouter, approvals: Approvals) -> None:
    decider = require_roles(*DECIDER_ROLES)

    @router.post(
        "/{approval_id}/approve",
        summary="Approve another person's pending action: it is performed, once",
        response_model=ApprovalView,
    )
    async def approve(
        approval_id: uuid.UUID,
        request: Request,
        body: Annotated[ApproveBody | None, Body()] = None,
        principal: Principal = Depends(decider),
    ) -> ApprovalView:
        decided = await approvals.approve(
            _pool(request), approval_id, principal, note=body.note if body is not None else None
        )
        return ApprovalView.of(decided)

    @router.post(
        "/{approval_id}/reject",
        summary="Reject another person's pending action, with a reason: nothing is performed",
        response_model=ApprovalView,
    )
    async def reject(
        approval_id: uuid.UUID, body: RejectBody, request: Request, principal: Principal = Depends(decider)
    ) -> ApprovalView:
        return ApprovalView.of(
            await approvals.reject(_pool(request), approval_id, principal, reason=body.reason)
        )

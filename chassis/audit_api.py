"""The audit API every service serves over its own audit log (DESIGN.md §5 "Additions", "Audit").

`GET /v1/audit` pages through the log in chain order, filtered by actor, action, subject and time;
`GET /v1/audit/verify` walks the whole chain and names the first entry where it breaks. Only auditors
and admins may read either. The pool is the service runtime's (`app.state.runtime.pool`).
"""

from __future__ import annotations

from typing import Annotated, Final

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from chassis.audit import AuditEntry, AuditFilter, list_audit, verify_audit_chain
from chassis.auth import Principal, Role, require_roles
from chassis.inputs import Aware, Identifier, Name, NonNegativeInt64

AUDIT_ROLES: Final = (Role.AUDITOR, Role.ADMIN)
DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 1000


class AuditPage(BaseModel):
    items: list[AuditEntry] = Field(description="entries in seq order, each with the hashes that chain it")
    next_after: int | None = Field(
        description="pass as `after` for the next page; null when this page is the last"
    )


class AuditVerification(BaseModel):
    ok: bool
    entries: int = Field(description="entries found intact, from the first up to the break (all when ok)")
    first_broken_seq: int | None = Field(description="the first entry whose link or content does not hold")


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool | None = request.app.state.runtime.pool
    if pool is None:
        raise RuntimeError("the service runtime has no database pool yet")
    return pool


def audit_router() -> APIRouter:
    """The two audit routes; a service mounts them with the rest of its routers."""
    router = APIRouter(prefix="/v1/audit", tags=["audit"])
    reader = Depends(require_roles(*AUDIT_ROLES))

    @router.get(
        "", summary="This service's audit log in chain order, filtered and paged", response_model=AuditPage
    )
    async def read_audit(
        request: Request,
        actor: Annotated[Identifier | None, Query(description="who acted (a token's subject)")] = None,
        action: Annotated[Name | None, Query(description="e.g. `order.cancelled`")] = None,
        subject_type: Annotated[Name | None, Query(description="e.g. `order`, `campaign`")] = None,
        subject_id: Annotated[Identifier | None, Query(description="the subject's id")] = None,
        occurred_from: Annotated[Aware | None, Query(alias="from", description="inclusive, RFC 3339")] = None,
        occurred_to: Annotated[Aware | None, Query(alias="to", description="exclusive, RFC 3339")] = None,
        after: Annotated[NonNegativeInt64, Query(description="the last seq already seen")] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
        _: Principal = reader,
    ) -> AuditPage:
        flt = AuditFilter(
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            occurred_from=occurred_from,
            occurred_to=occurred_to,
        )
        async with _pool(request).acquire() as conn:
            entries = await list_audit(conn, flt, after_seq=after, limit=limit)
        return AuditPage(
            items=entries,
            next_after=entries[-1].seq if len(entries) == limit else None,
        )

    @router.get(
        "/verify",
        summary="Recompute the whole hash chain; name the first entry where it breaks",
        response_model=AuditVerification,
    )
    async def verify_audit(request: Request, _: Principal = reader) -> AuditVerification:
        async with (
            _pool(request).acquire() as conn,
            conn.transaction(readonly=True, isolation="repeatable_read"),
        ):
            result = await verify_audit_chain(conn)
        return AuditVerification(
            ok=result.ok, entries=result.entries, first_broken_seq=result.first_broken_seq
        )

    return router

"""What every voucher route shares: the context, the callers admitted, error mapping, serving held orders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar, cast

import asyncpg
import structlog
from fastapi import Depends, Request

from chassis.auth import Principal, Role, require_roles
from chassis.db import Connection
from chassis.problems import Problem, register_error

from . import domain, issuance
from .context import VoucherContext
from .crypto import CodeVault
from .csv_import import UnreadableFile

log = structlog.get_logger(__name__)

T = TypeVar("T")

for error, status, code in (
    (domain.CampaignNotFound, 404, "campaign_not_found"),
    (domain.CampaignExists, 409, "campaign_exists"),
    (domain.CampaignStateError, 409, "campaign_status_conflict"),
    (domain.CampaignRuleError, 409, "campaign_rule_violated"),
    (domain.CodeNotFound, 404, "code_not_found"),
    (domain.CodeOperationRefused, 422, "code_operation_refused"),
    (domain.PointsCampaignHasNoCodes, 409, "points_campaign_has_no_codes"),
    (domain.InvalidGeneration, 422, "invalid_generation"),
    (UnreadableFile, 422, "unreadable_file"),
):
    register_error(error, status, code)

REFUSAL_STATUS = {
    domain.Refusal.UNKNOWN_CODE: 404,
    domain.Refusal.NOT_YOUR_CAMPAIGN: 403,
    domain.Refusal.IDEMPOTENCY_KEY_REUSED: 409,
}


def refusal_problem(error: domain.RedemptionRefused) -> Problem:
    return Problem(REFUSAL_STATUS.get(error.reason, 422), str(error.reason), detail=str(error))


def voucher_context(request: Request) -> VoucherContext:
    return cast(VoucherContext, request.app.state.runtime.spec.context)


Ctx = Annotated[VoucherContext, Depends(voucher_context)]

READERS = (Role.ADMIN, Role.OPS, Role.FINANCE, Role.AUDITOR, Role.SUPPORT_AGENT)
Reader = Annotated[Principal, Depends(require_roles(*READERS))]
Operator = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPS))]
"""Who manages campaigns and operates on codes."""


def invalid(field: str, message: str) -> Problem:
    return Problem(
        422,
        "validation_failed",
        detail=message,
        errors=[{"field": field, "code": "invalid", "message": message}],
    )


async def serve_held_orders(pool: asyncpg.Pool, vault: CodeVault, *campaign_ids: str, rounds: int = 5) -> int:
    """Stock or budget came back to these campaigns: serve what waits now rather than at the job's next
    tick. How many orders were served."""
    served = 0
    for campaign_id in campaign_ids:
        for _ in range(rounds):
            async with pool.acquire() as conn, conn.transaction():
                done = await issuance.serve_holds(conn, vault, campaign_id=campaign_id)
            served += done
            if done == 0:
                break
    return served


async def in_transaction(pool: asyncpg.Pool, work: Callable[[Connection], Awaitable[T]]) -> T:
    async with pool.acquire() as conn, conn.transaction():
        return await work(conn)

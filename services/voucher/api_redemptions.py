"""HTTP: partner redemption, answered immediately with the value left on the code; a refusal is
answered with its reason and put on record."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from chassis.auth import Principal, Role, require_roles
from chassis.deps import DbPool
from chassis.inputs import Identifier, Text
from contracts.values import PositiveMoney

from . import redemption
from .api_common import Ctx, in_transaction, refusal_problem
from .domain import RedemptionRefused
from .views import RedemptionOut


class RedemptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=200)
    amount: PositiveMoney | None = Field(default=None, description="absent: everything left on the code")
    channel: Identifier = Field(description="e.g. `online`, `in_store`")
    location: Text | None = None
    idempotency_key: Identifier
    test_mode: bool = Field(default=False, description="redeem UAT test codes (and only those)")


router = APIRouter(prefix="/v1/redemptions", tags=["redemptions"])


@router.post(
    "",
    summary="Redeem a code, fully or partly (partners, own campaigns only)",
    response_model=RedemptionOut,
)
async def redeem(
    body: RedemptionRequest,
    ctx: Ctx,
    pool: DbPool,
    principal: Principal = Depends(require_roles(Role.PARTNER)),
) -> dict[str, Any]:
    attempt = redemption.Attempt(
        partner_id=principal.sub,
        code=body.code.strip(),
        amount=body.amount,
        channel=body.channel,
        location=body.location,
        test_mode=body.test_mode,
    )
    try:
        return await in_transaction(
            pool,
            lambda conn: redemption.redeem(conn, ctx.vault, attempt, idempotency_key=body.idempotency_key),
        )
    except RedemptionRefused as error:
        refusal = error
        await in_transaction(pool, lambda conn: redemption.record_refusal(conn, ctx.vault, refusal, attempt))
        raise refusal_problem(refusal) from None

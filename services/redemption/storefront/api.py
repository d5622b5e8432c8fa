"""HTTP in for the storefront: the rewards catalogue and members' redemptions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from chassis.auth import STAFF_ROLES, Principal, Role, require_roles
from chassis.deps import DbPool
from chassis.inputs import INT32_MAX, Identifier, Name, NonNegativeInt32, NoNul, Text
from chassis.models import model_from
from chassis.money import money_text
from chassis.problems import Problem
from chassis.rows import from_attributes
from contracts.values import (
    Channel,
    Currency,
    Email,
    Locale,
    Phone,
    PositiveMoney,
    PositivePoints,
)
from services.redemption.catalogue_api import create_entry
from services.redemption.deps import acting_for, settings
from services.redemption.records.repository import write_record
from services.redemption.settings import RedemptionSettings
from services.redemption.storefront import domain
from services.redemption.storefront import repository as repo
from services.redemption.storefront.steps import RetryPolicy, emit, storefront_record
from services.redemption.views import RewardOut, RewardPage, StorefrontRedemption, StorefrontRedemptionPage

router = APIRouter(tags=["storefront"])

CATALOGUE_MANAGERS = (Role.ADMIN, Role.OPS)
ANYONE = tuple(Role)


class RewardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reward_id: Identifier | None = None
    name: Name
    description: Text | None = None
    campaign_id: Identifier = Field(description="the voucher campaign the reward's voucher comes from")
    points_price: Annotated[PositivePoints, Field(le=INT32_MAX)]
    amount: PositiveMoney | None = Field(default=None, description="voucher value; absent: the face value")
    currency: Currency | None = None
    active: bool = True
    stock: NonNegativeInt32 | None = Field(default=None, description="units available; absent: unlimited")


def reward_view(reward: repo.Reward) -> dict[str, Any]:
    """The reward as `RewardOut` tells it: its price and value as decimal strings."""
    return model_from(
        RewardOut,
        reward,
        points_price=str(reward.points_price),
        amount=money_text(reward.amount, reward.currency),
    ).model_dump()


@router.post("/v1/rewards", status_code=201, response_model=RewardOut)
async def create_reward(
    body: RewardIn,
    principal: Annotated[Principal, Depends(require_roles(*CATALOGUE_MANAGERS))],
    pool: DbPool,
) -> dict[str, Any]:
    reward = from_attributes(
        repo.Reward,
        body,
        reward_id=body.reward_id or f"rw-{uuid.uuid4().hex[:12]}",
        stock_remaining=body.stock,
    )
    by = principal.actor
    await create_entry(
        pool,
        kind="reward",
        entry_id=reward.reward_id,
        insert=lambda conn: repo.insert_reward(conn, reward, created_by=by),
        by=by,
        details=body.model_dump(mode="json", exclude_none=True),
    )
    return reward_view(reward)


@router.get("/v1/rewards", response_model=RewardPage)
async def list_rewards(
    principal: Annotated[Principal, Depends(require_roles(*ANYONE))],
    pool: DbPool,
    available: Annotated[bool | None, Query(description="only rewards that can be redeemed now")] = None,
) -> dict[str, Any]:
    # Members and partners see what can be bought; staff may ask for the whole catalogue.
    only_available = available if principal.has_any_role(STAFF_ROLES) else True
    async with pool.acquire() as conn:
        rewards = await repo.list_rewards(conn, only_available=bool(only_available))
    return {"items": [reward_view(r) for r in rewards]}


class RedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reward_id: Identifier
    member_id: Identifier | None = Field(
        default=None, description="staff only; a member redeems for themself"
    )
    idempotency_key: Identifier | None = Field(
        default=None, description="repeat a request safely: one key, one redemption per member"
    )
    channel: Channel | None = None
    name: Name | None = None
    email: Annotated[Email, NoNul] | None = None
    phone: Phone | None = None
    locale: Locale | None = None


async def redemption_view(conn: Any, row: repo.SagaRow) -> dict[str, Any]:
    saga = row.saga
    return {
        "redemption_id": str(saga.redemption_id),
        "member_id": row.member_id,
        "reward_id": row.reward_id,
        "campaign_id": row.campaign_id,
        "points": str(row.points),
        "status": str(saga.state),
        "reason": saga.reason,
        "order_id": str(saga.order_id) if saga.order_id else None,
        "booking_id": saga.booking_id,
        "charged": saga.debit_entry_id is not None,
        "refunded": saga.refund_entry_id is not None,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "history": [
            {**t, "at": t["at"].isoformat()} for t in await repo.transitions(conn, saga.redemption_id)
        ],
    }


def policy_of(s: RedemptionSettings) -> RetryPolicy:
    return RetryPolicy(s.saga_retry_base_s, s.saga_retry_cap_s, s.saga_max_order_attempts)


def _redeeming_member(principal: Principal, body: RedemptionIn) -> str:
    """Staff redeem for the member they name; a member only for themself."""
    return acting_for(
        principal,
        body.member_id,
        field="member_id",
        staff_detail="member_id is required when staff redeem",
        own_detail="A member redeems only for themself.",
    )


def _new_saga_row(
    saga: domain.Saga, reward: repo.Reward, member_id: str, contact: dict[str, Any], by: str, now: datetime
) -> repo.SagaRow:
    """The saga of a redemption of `reward` just started, at the reward's price and value now."""
    return repo.SagaRow(
        saga=saga,
        member_id=member_id,
        reward_id=reward.reward_id,
        campaign_id=reward.campaign_id,
        points=reward.points_price,
        amount=reward.amount,
        currency=reward.currency,
        contact=contact or None,
        correlation_id=str(saga.redemption_id),
        requested_by=by,
        created_at=now,
        updated_at=now,
    )


@router.post("/v1/storefront/redemptions", status_code=202, response_model=StorefrontRedemption)
async def redeem_reward(
    body: RedemptionIn,
    response: Response,
    principal: Annotated[Principal, Depends(require_roles(Role.MEMBER, Role.ADMIN, Role.OPS))],
    pool: DbPool,
    cfg: Annotated[RedemptionSettings, Depends(settings)],
) -> dict[str, Any]:
    member_id = _redeeming_member(principal, body)
    contact = body.model_dump(
        include={"channel", "name", "email", "phone", "locale"}, exclude_none=True, mode="json"
    )
    policy = policy_of(cfg)
    async with pool.acquire() as conn, conn.transaction():
        if body.idempotency_key is not None:
            existing = await repo.find_by_client_key(conn, member_id, body.idempotency_key)
            if existing is not None:
                if existing.reward_id != body.reward_id:
                    raise Problem(
                        409,
                        "idempotency_key_reused",
                        detail="This idempotency_key was used for another reward.",
                    )
                response.status_code = 200
                return await redemption_view(conn, existing)
        reward = await repo.get_reward(conn, body.reward_id)
        if reward is None:
            raise Problem(404, "reward_not_found", detail=f"No reward {body.reward_id}.")
        if not await repo.take_stock(conn, reward.reward_id):
            raise Problem(409, "reward_unavailable", detail=f"Reward {reward.reward_id} is not available.")
        decision = domain.start(uuid.uuid4())
        now = datetime.now(UTC)
        row = _new_saga_row(decision.saga, reward, member_id, contact, principal.actor, now)
        if not await repo.insert_saga(
            conn,
            row,
            client_key=body.idempotency_key,
            next_attempt_at=policy.next_attempt_at(row.saga, now) or now,
        ):
            # A concurrent request with the same key won: roll back our stock and answer with its saga.
            raise Problem(
                409, "redemption_in_progress", detail="A request with this idempotency_key is running."
            )
        stored = await repo.get_saga(conn, row.saga.redemption_id)
        assert stored is not None
        await emit(conn, stored, stored.saga, decision.commands, stored.correlation_id, None)
        await write_record(conn, storefront_record(stored, stored.saga), correlation_id=stored.correlation_id)
        return await redemption_view(conn, stored)


@router.get("/v1/storefront/redemptions/{redemption_id}", response_model=StorefrontRedemption)
async def get_redemption(
    redemption_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require_roles(*ANYONE))],
    pool: DbPool,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await repo.get_saga(conn, redemption_id)
        # Someone else's redemption is as invisible as a missing one.
        if row is None or not principal.may_access_member(row.member_id):
            raise Problem(404, "redemption_not_found", detail=f"No redemption {redemption_id}.")
        return await redemption_view(conn, row)


@router.get("/v1/storefront/redemptions", response_model=StorefrontRedemptionPage)
async def list_redemptions(
    principal: Annotated[Principal, Depends(require_roles(*ANYONE))],
    pool: DbPool,
    member_id: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    member = member_id or principal.sub
    principal.ensure_may_access_member(member)
    async with pool.acquire() as conn:
        rows = await repo.list_sagas(conn, member, limit)
        return {"items": [await redemption_view(conn, r) for r in rows]}

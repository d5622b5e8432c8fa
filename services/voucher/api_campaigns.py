"""HTTP: campaigns (create, list, update, pause, resume, end, overview)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chassis.approvals import PENDING_RESPONSE, pending_answer
from chassis.deps import DbPool
from chassis.inputs import Identifier, Name, NonNegativeInt32, Text
from chassis.inputs import Identifier as QueryIdentifier
from chassis.money import with_money_text
from contracts.values import Channel, Currency, PositiveMoney, RewardType
from contracts.vouchers import CampaignStatus, ExpiryKind, ExpiryPolicy

from . import campaigns
from .api_common import Ctx, Operator, Reader, in_transaction, invalid, serve_held_orders
from .approvals import ask_for_budget_increase
from .views import CampaignOut, CampaignOverview, CampaignPage

MONEY_FIELDS = ("face_value", "per_record_limit", "budget", "budget_used", "budget_left")

# The columns are numeric(18, 4): fourteen digits before the point.
ColumnMoney = Annotated[PositiveMoney, Field(lt=Decimal("1e14"))]


class CampaignFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    reward_type: RewardType = RewardType.VOUCHER
    brand: Name | None = None
    face_value: ColumnMoney | None = None
    currency: Currency | None = None
    expiry_policy: ExpiryPolicy = Field(default_factory=lambda: ExpiryPolicy(kind=ExpiryKind.NONE))
    budget: ColumnMoney | None = None
    default_channel: Channel = Channel.EMAIL
    per_record_limit: ColumnMoney | None = None
    partner_ids: list[Identifier] = Field(default_factory=list)
    low_stock_threshold: NonNegativeInt32 = 0
    allow_partial_redemption: bool = True


class CampaignCreate(CampaignFields):
    campaign_id: Identifier | None = Field(default=None, description="your own id; generated when absent")


class CampaignUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    brand: Name | None = None
    face_value: ColumnMoney | None = None
    currency: Currency | None = None
    reward_type: RewardType | None = None
    expiry_policy: ExpiryPolicy | None = None
    budget: ColumnMoney | None = None
    default_channel: Channel | None = None
    per_record_limit: ColumnMoney | None = None
    partner_ids: list[Identifier] | None = None
    low_stock_threshold: NonNegativeInt32 | None = None
    allow_partial_redemption: bool | None = None


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text | None = None


def _domain_fields(data: dict[str, Any]) -> dict[str, Any]:
    if "allow_partial_redemption" in data:
        data["allow_partial"] = data.pop("allow_partial_redemption")
    if "partner_ids" in data:
        data["partner_ids"] = tuple(data["partner_ids"])
    if isinstance(data.get("expiry_policy"), dict):
        data["expiry_policy"] = ExpiryPolicy.model_validate(data["expiry_policy"])
    return data


def campaign_json(c: campaigns.Campaign) -> dict[str, Any]:
    body = c.to_event().model_dump(mode="json")
    body.update(
        low_stock_threshold=c.low_stock_threshold,
        allow_partial_redemption=c.allow_partial,
        budget_used=c.budget_used,
        budget_left=None if c.budget is None else c.budget - c.budget_used,
        created_at=c.created_at,
        updated_at=c.updated_at,
    )
    return with_money_text(body, *MONEY_FIELDS)


def update_changes(body: dict[str, Any]) -> dict[str, Any]:
    """The domain changes of a stored `PATCH /v1/campaigns/{id}` body (approved budget increases)."""
    return _domain_fields(CampaignUpdate.model_validate(body).model_dump(exclude_unset=True))


def _contract_problem(error: ValidationError) -> Exception:
    first = error.errors()[0]
    return invalid(".".join(str(p) for p in first["loc"]) or "body", first["msg"])


router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.post("", status_code=201, summary="Create a campaign", response_model=CampaignOut)
async def create(body: CampaignCreate, pool: DbPool, principal: Operator) -> dict[str, Any]:
    fields = _domain_fields(
        body.model_dump(exclude={"expiry_policy"}) | {"expiry_policy": body.expiry_policy}
    )
    try:
        saved = await in_transaction(pool, lambda conn: campaigns.create(conn, fields, actor=principal.actor))
    except ValidationError as error:
        raise _contract_problem(error) from None
    return campaign_json(saved)


@router.get("", summary="Campaigns, in id order, a page at a time", response_model=CampaignPage)
async def list_all(
    pool: DbPool,
    _: Reader,
    status: CampaignStatus | None = None,
    reward_type: RewardType | None = None,
    after: Annotated[QueryIdentifier | None, Query(description="the last campaign id seen")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        found = await campaigns.list_campaigns(
            conn, status=status, reward_type=reward_type, after=after, limit=limit
        )
    return {
        "items": [campaign_json(c) for c in found],
        "next_after": found[-1].campaign_id if len(found) == limit else None,
    }


@router.get(
    "/{campaign_id}",
    summary="A campaign with code counts, budget and issuance rate",
    response_model=CampaignOverview,
)
async def get(campaign_id: str, pool: DbPool, _: Reader) -> dict[str, Any]:
    async with pool.acquire() as conn:
        view = await campaigns.overview(conn, campaign_id)
    return campaign_json(view.pop("campaign")) | view


@router.patch(
    "/{campaign_id}",
    summary="Change a campaign's settings (budget, partners, expiry…); a budget increase waits for"
    " a second person's approval (202)",
    response_model=CampaignOut,
    responses=PENDING_RESPONSE,
)
async def update(campaign_id: str, body: CampaignUpdate, ctx: Ctx, pool: DbPool, principal: Operator) -> Any:
    changes = _domain_fields(body.model_dump(exclude_unset=True))
    for name, value in changes.items():
        if value is None and name not in ("brand", "budget", "per_record_limit"):
            raise invalid(name, f"{name} cannot be null")
    if "budget" in changes:
        pending = await in_transaction(
            pool,
            lambda conn: ask_for_budget_increase(
                conn,
                ctx.approvals,
                campaign_id=campaign_id,
                update=body.model_dump(mode="json", exclude_unset=True),
                wanted=changes["budget"],
                principal=principal,
                above=ctx.settings.budget_approval_above,
            ),
        )
        if pending is not None:
            return pending_answer(pending)
    try:
        saved = await in_transaction(
            pool, lambda conn: campaigns.update(conn, campaign_id, changes, actor=principal.actor)
        )
    except ValidationError as error:
        raise _contract_problem(error) from None
    if "budget" in changes:
        await serve_held_orders(pool, ctx.vault, campaign_id)
    return campaign_json(saved)


def _status_route(action: str) -> None:
    @router.post(
        f"/{{campaign_id}}/{action}",
        summary=f"{action.capitalize()} the campaign",
        name=action,
        response_model=CampaignOut,
    )
    async def change(
        campaign_id: str, ctx: Ctx, pool: DbPool, principal: Operator, body: StatusChange | None = None
    ) -> dict[str, Any]:
        reason = body.reason if body else None
        saved = await in_transaction(
            pool,
            lambda conn: campaigns.change_status(
                conn, campaign_id, action, actor=principal.actor, reason=reason
            ),
        )
        if action == "resume":
            await serve_held_orders(pool, ctx.vault, campaign_id)
        return campaign_json(saved)


for _action in ("pause", "resume", "end"):
    _status_route(_action)

"""HTTP in for looking after the rewards catalogue (admin, ops): read one reward, edit it, pause, resume
and end it. A paused or ended reward is not offered and its redemptions are refused
(`reward_unavailable`); redemptions already under way finish as they started."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from chassis.auth import STAFF_ROLES, Principal, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.inputs import INT32_MAX, Identifier, Name, NonNegativeInt32, Text
from chassis.problems import Problem
from contracts.values import Currency, PositiveMoney, PositivePoints
from services.redemption.catalogue_api import Catalogue, add_catalogue_routes, refuse_cleared
from services.redemption.lifecycle import CatalogueStatus, LifecycleAction
from services.redemption.storefront import repository as repo
from services.redemption.storefront.api import ANYONE, CATALOGUE_MANAGERS, reward_view
from services.redemption.views import RewardOut

router = APIRouter(tags=["storefront"])


class RewardChangesIn(BaseModel):
    """What can change of a reward; a field left out stays, `null` clears an optional one."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Text | None = None
    points_price: Annotated[PositivePoints, Field(le=INT32_MAX)] | None = None
    amount: PositiveMoney | None = None
    currency: Currency | None = None
    stock: NonNegativeInt32 | None = Field(default=None, description="units available now; null: unlimited")


REQUIRED = ("name", "points_price")


def _missing(reward: repo.Reward | None, reward_id: str) -> repo.Reward:
    if reward is None:
        raise Problem(404, "reward_not_found", detail=f"No reward {reward_id}.")
    return reward


async def _locked(conn: Connection, principal: Principal, reward_id: str) -> repo.Reward:
    return _missing(await repo.lock_reward(conn, reward_id), reward_id)


def _edited(reward: repo.Reward, changes: dict[str, Any]) -> repo.Reward:
    refuse_cleared(changes, REQUIRED)
    if "stock" in changes:
        changes["stock_remaining"] = changes.pop("stock")
    return replace(reward, **changes)


@router.get("/v1/rewards/{reward_id}", response_model=RewardOut)
async def get_reward(
    reward_id: Identifier,
    principal: Annotated[Principal, Depends(require_roles(*ANYONE))],
    pool: DbPool,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        reward = _missing(await repo.get_reward(conn, reward_id), reward_id)
    if not reward.available and not principal.has_any_role(STAFF_ROLES):
        raise Problem(404, "reward_not_found", detail=f"No reward {reward_id}.")  # as in the list
    return reward_view(reward)


add_catalogue_routes(
    router,
    Catalogue[repo.Reward](
        kind="reward",
        lock=_locked,
        with_status=lambda reward, status: replace(
            reward, status=status, active=status is CatalogueStatus.ACTIVE
        ),
        edited=_edited,
        save=repo.update_reward,
        view=reward_view,
        terms=reward_view,
    ),
    collection="rewards",
    managers=CATALOGUE_MANAGERS,
    response_model=RewardOut,
    changes=RewardChangesIn,
    descriptions={
        "edit": "Change a reward's name, description, price, voucher value or stock; an ended one stays as it"
        " was.\nA new price applies to redemptions started after it.",
        LifecycleAction.PAUSE: "Take a reward off the storefront until it is resumed.",
        LifecycleAction.END: "Retire a reward for good: never offered again, no longer editable.",
    },
)

"""HTTP in for retention: see the policy, run it now or as a dry run that says what would go."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from chassis.auth import Principal, Role, require_roles
from chassis.deps import DbPool
from chassis.problems import Problem
from services.redemption.deps import settings
from services.redemption.retention.service import rules_from, run_retention
from services.redemption.settings import RedemptionSettings
from services.redemption.views import RetentionPolicy, RetentionRun

router = APIRouter(tags=["retention"])


class RetentionRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = True


@router.get("/v1/retention/policy", response_model=RetentionPolicy)
async def retention_policy(
    _: Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AUDITOR))],
    cfg: Annotated[RedemptionSettings, Depends(settings)],
) -> dict[str, Any]:
    return {
        "rules": [
            {"record_type": r.record_type, "days": r.days, "action": str(r.action)} for r in rules_from(cfg)
        ]
    }


@router.post("/v1/retention/runs", response_model=RetentionRun)
async def run_retention_now(
    body: RetentionRunIn,
    principal: Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.AUDITOR))],
    pool: DbPool,
    cfg: Annotated[RedemptionSettings, Depends(settings)],
) -> dict[str, Any]:
    """Auditors may only look (dry run); admins may also purge, which is audited like the job's purges."""
    if not body.dry_run and Role.ADMIN not in principal.roles:
        raise Problem(403, "forbidden", detail="Only an admin may purge; use dry_run to see what would go.")
    outcomes = await run_retention(pool, rules_from(cfg), actor=principal.actor, dry_run=body.dry_run)
    return {"dry_run": body.dry_run, "results": [o.as_dict() for o in outcomes]}

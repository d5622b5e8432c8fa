"""FastAPI dependencies shared by the service's routers: the pool and the settings of the running service."""

from __future__ import annotations

from typing import cast

import asyncpg
from fastapi import Request

from chassis.auth import Principal, Role
from chassis.problems import Problem, invalid_field
from services.redemption.settings import RedemptionSettings


def pool(request: Request) -> asyncpg.Pool:
    runtime_pool = request.app.state.runtime.pool
    if runtime_pool is None:
        raise Problem(503, "not_ready", detail="The service is still starting.")
    return cast(asyncpg.Pool, runtime_pool)


def settings(request: Request) -> RedemptionSettings:
    return cast(RedemptionSettings, request.app.state.settings)


def acting_for(
    principal: Principal, named: str | None, *, field: str, staff_detail: str, own_detail: str
) -> str:
    """Whom a request acts for: staff (admin, ops) for the one they name in `field`, which they must;
    anyone else (a partner, a member) only for themself, named or not."""
    if principal.has_any_role((Role.ADMIN, Role.OPS)):
        if named is None:
            raise invalid_field(field, "missing", "required for staff", detail=staff_detail)
        return named
    if named not in (None, principal.sub):
        raise Problem(403, "forbidden", detail=own_detail)
    return principal.sub

"""FastAPI dependencies shared by the service's routers besides the pool (`chassis.deps.DbPool`): the
settings of the running service, and whom a request acts for."""

from __future__ import annotations

from typing import cast

from fastapi import Request

from chassis.auth import Principal, Role
from chassis.problems import Problem, invalid_field
from services.redemption.settings import RedemptionSettings


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

"""HTTP in: per-campaign Slack/Teams routing (admin, ops). A campaign's notices (codes generated,
imported or recovered, expiry extended, stock low, budget nearly spent, final delivery failures) go to
its own channels too, mentioning its owners (and, on budget notices, its approvers); `only_here` keeps
them off the default channels. Webhook URLs are secrets: checked like webhook URLs, stored sealed,
never answered (only their host is), and kept out of the audit log."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from chassis.audit import append_audit
from chassis.auth import Principal, Role, require_roles
from chassis.deps import DbPool
from chassis.inputs import Identifier, NoNul
from chassis.problems import Problem

from .codes import CodeVault
from .notifications import ROUTABLE
from .repository import campaign_routes as repository
from .routes import request_settings
from .webhooks.domain import AddressRefused
from .webhooks.transport import check_destination

router = APIRouter(prefix="/v1/notifications/campaigns", tags=["notifications"])
Manager = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPS))]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2000), NoNul]
Person = Annotated[str, StringConstraints(min_length=1, max_length=100), NoNul]


class RouteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack_url: Url | None = Field(default=None, description="a Slack incoming-webhook URL")
    teams_url: Url | None = Field(default=None, description="a Microsoft Teams incoming-webhook URL")
    owners: list[Person] = Field(default_factory=list, max_length=20, description="mentioned in every notice")
    approvers: list[Person] = Field(
        default_factory=list, max_length=20, description="mentioned in budget notices, beside the owners"
    )
    kinds: list[str] | None = Field(
        default=None, description=f"notices it takes, of {sorted(ROUTABLE)}; absent: all of them"
    )
    only_here: bool = Field(default=False, description="keep its notices off the default channels")


class RouteOut(BaseModel):
    campaign_id: str
    slack_host: str | None
    teams_host: str | None
    owners: list[str]
    approvers: list[str]
    kinds: list[str]
    only_here: bool


class RoutePage(BaseModel):
    items: list[RouteOut]
    next_after: str | None


def _host(vault: CodeVault, sealed: bytes | None) -> str | None:
    return None if sealed is None else urlsplit(vault.open(sealed).get_secret_value()).hostname


def _view(vault: CodeVault, route: repository.CampaignRoute) -> dict[str, Any]:
    return {
        "campaign_id": route.campaign_id,
        "slack_host": _host(vault, route.slack_url),
        "teams_host": _host(vault, route.teams_url),
        "owners": list(route.owners),
        "approvers": list(route.approvers),
        "kinds": list(route.kinds),
        "only_here": route.only_here,
    }


def _field_error(field: str, code: str, message: str) -> Problem:
    return Problem(
        422,
        "validation_failed",
        detail=message,
        errors=[{"field": f"body.{field}", "code": code, "message": message}],
    )


def _kinds(asked: list[str] | None) -> tuple[str, ...]:
    if asked is None:
        return tuple(sorted(ROUTABLE))
    unknown = sorted(set(asked) - ROUTABLE)
    if unknown or not asked:
        raise _field_error("kinds", "unknown_kinds", f"kinds are some of {sorted(ROUTABLE)}; not {unknown}")
    return tuple(sorted(set(asked)))


def _vault(request: Request) -> CodeVault:
    return CodeVault(request_settings(request).code_key)


@router.put("/{campaign_id}", response_model=RouteOut, summary="Route a campaign's notices to its channels")
async def save_route(
    campaign_id: Identifier, body: RouteIn, request: Request, pool: DbPool, principal: Manager
) -> dict[str, Any]:
    if body.slack_url is None and body.teams_url is None:
        raise _field_error("slack_url", "missing", "give a slack_url, a teams_url or both")
    dev = request_settings(request).is_dev
    for field, url in (("slack_url", body.slack_url), ("teams_url", body.teams_url)):
        if url is not None:
            try:
                await check_destination(url, dev=dev)
            except AddressRefused as exc:
                raise _field_error(field, "url_refused", str(exc)) from None
    vault = _vault(request)
    route = repository.CampaignRoute(
        campaign_id=campaign_id,
        slack_url=vault.seal(SecretStr(body.slack_url)) if body.slack_url else None,
        teams_url=vault.seal(SecretStr(body.teams_url)) if body.teams_url else None,
        owners=tuple(body.owners),
        approvers=tuple(body.approvers),
        kinds=_kinds(body.kinds),
        only_here=body.only_here,
    )
    view = _view(vault, route)
    actor = principal.actor
    async with pool.acquire() as conn, conn.transaction():
        await repository.save_route(conn, route, updated_by=actor)
        await append_audit(
            conn,
            actor=actor,
            action="notifications.route_saved",
            subject_type="campaign",
            subject_id=campaign_id,
            details={k: v for k, v in view.items() if k != "campaign_id"},
        )
    return view


@router.get("/{campaign_id}", response_model=RouteOut, summary="A campaign's notice route")
async def get_route(campaign_id: Identifier, request: Request, pool: DbPool, _: Manager) -> dict[str, Any]:
    async with pool.acquire() as conn:
        route = await repository.get_route(conn, campaign_id)
    if route is None:
        raise Problem(404, "route_not_found", detail=f"Campaign {campaign_id} has no route of its own.")
    return _view(_vault(request), route)


@router.get("", response_model=RoutePage, summary="Campaigns with a notice route, by campaign id")
async def list_routes(
    request: Request,
    pool: DbPool,
    _: Manager,
    after: Annotated[Identifier | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    async with pool.acquire() as conn:
        routes = await repository.list_routes(conn, after=after, limit=limit)
    vault = _vault(request)
    last = routes[-1].campaign_id if len(routes) == limit else None
    return {"items": [_view(vault, r) for r in routes], "next_after": last}


@router.delete("/{campaign_id}", status_code=204, summary="Stop routing a campaign's notices")
async def delete_route(campaign_id: Identifier, pool: DbPool, principal: Manager) -> Response:
    actor = principal.actor
    async with pool.acquire() as conn, conn.transaction():
        if not await repository.delete_route(conn, campaign_id):
            raise Problem(404, "route_not_found", detail=f"Campaign {campaign_id} has no route of its own.")
        await append_audit(
            conn,
            actor=actor,
            action="notifications.route_deleted",
            subject_type="campaign",
            subject_id=campaign_id,
            details={},
        )
    return Response(status_code=204)

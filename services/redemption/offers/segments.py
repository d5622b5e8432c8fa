"""The tier and segments Orchard holds for a member, set by staff; offer eligibility trusts them over
a partner's claim."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from chassis.auth import Principal, Role, require_roles
from chassis.deps import DbPool
from chassis.inputs import Identifier
from chassis.problems import Problem
from services.redemption.audit import audit
from services.redemption.offers import domain
from services.redemption.offers import repository as repo

router = APIRouter(tags=["offers"])

SEGMENT_MANAGERS = (Role.ADMIN, Role.OPS)


class MemberSegmentsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: Identifier | None = None
    segments: list[Identifier] = Field(default_factory=list, max_length=50)


class MemberSegmentsOut(BaseModel):
    member_id: str
    tier: str | None
    segments: list[str]


def segments_view(segments: domain.MemberSegments) -> dict[str, Any]:
    return {"member_id": segments.member_id, "tier": segments.tier, "segments": list(segments.segments)}


@router.put("/v1/members/{member_id}/segments", response_model=MemberSegmentsOut)
async def set_member_segments(
    member_id: str,
    body: MemberSegmentsIn,
    principal: Annotated[Principal, Depends(require_roles(*SEGMENT_MANAGERS))],
    pool: DbPool,
) -> dict[str, Any]:
    """Record the member's tier and segments; from then on a partner cannot claim others."""
    segments = domain.MemberSegments(member_id, body.tier, tuple(dict.fromkeys(body.segments)))
    async with pool.acquire() as conn, conn.transaction():
        await repo.set_member_segments(conn, segments, updated_by=principal.actor)
        await audit(conn, principal.actor, "member", member_id, "segments_set", segments_view(segments))
    return segments_view(segments)


@router.get("/v1/members/{member_id}/segments", response_model=MemberSegmentsOut)
async def get_member_segments(
    member_id: str,
    principal: Annotated[Principal, Depends(require_roles(*SEGMENT_MANAGERS, Role.MEMBER))],
    pool: DbPool,
) -> dict[str, Any]:
    if not principal.may_access_member(member_id):
        raise Problem(403, "forbidden", detail="A member sees only their own tier and segments.")
    async with pool.acquire() as conn:
        segments = await repo.get_member_segments(conn, member_id)
    if segments is None:
        raise Problem(404, "member_segments_not_found", detail=f"Nothing is known about {member_id}'s tier.")
    return segments_view(segments)

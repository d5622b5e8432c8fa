"""HTTP in: failure review (list, inspect every attempt, correct, resend one or many) for admin, ops
and support agents, and per-campaign delivery settings. Contact details are shown masked."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from chassis.audit import append_audit
from chassis.auth import Principal, Role, require_roles
from chassis.deps import DbPool
from chassis.inputs import Aware, Identifier, NoNul, Text
from chassis.logging import redact_text
from chassis.problems import Problem, invalid_field, register_error
from contracts.values import Channel, Email, Phone

from . import repository, review
from .domain import DeliveryError, DeliveryNotFound, NotResendable, ResendTooSoon

register_error(DeliveryNotFound, 404, "delivery_not_found")
register_error(NotResendable, 409, "delivery_not_resendable")
register_error(ResendTooSoon, 429, "resend_too_soon")

REVIEWERS = (Role.ADMIN, Role.OPS, Role.SUPPORT_AGENT)
Reviewer = Annotated[Principal, Depends(require_roles(*REVIEWERS))]
Manager = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.OPS))]

router = APIRouter(prefix="/v1", tags=["delivery"])


class Attempt(BaseModel):
    attempt: int
    channel: Channel
    send_round: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    reason_code: str | None
    retryable: bool | None
    provider_message_id: str | None
    provider_response: str | None


class Delivery(BaseModel):
    delivery_id: uuid.UUID
    kind: str = Field(description="`voucher` (an order's code) or `message` (delivery.message_requested)")
    order_id: uuid.UUID | None
    message_id: uuid.UUID | None = None
    template: str | None = None
    booking_id: str | None
    member_id: str | None
    campaign_id: str | None
    status: str
    channel: Channel | None
    requested_channel: Channel | None
    email: str | None = Field(description="masked")
    phone: str | None = Field(description="masked")
    locale: str
    masked_code: str | None
    code_held: bool
    attempts: int
    send_round: int
    last_reason_code: str | None
    fallback_trail: list[dict[str, Any]]
    next_attempt_at: datetime | None
    last_resend_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None


class DeliveryWithAttempts(Delivery):
    attempt_log: list[Attempt]


def _delivery(row: asyncpg.Record) -> dict[str, Any]:
    trail = row["fallback_trail"]
    return {
        **{k: row[k] for k in Delivery.model_fields if k in row.keys()},  # noqa: SIM118
        "email": redact_text(row["email"]) if row["email"] else None,
        "phone": redact_text(row["phone"]) if row["phone"] else None,
        "code_held": row["code_ciphertext"] is not None,
        "fallback_trail": json.loads(trail) if isinstance(trail, str) else trail,
    }


class FailedPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None


def _cursor(row: asyncpg.Record) -> str:
    return base64.urlsafe_b64encode(f"{row['failed_at'].isoformat()}|{row['delivery_id']}".encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), uuid.UUID(ident)
    except ValueError as exc:
        raise invalid_field("query.cursor", "invalid", "not a cursor from this API") from exc


@router.get("/deliveries/failed", response_model=FailedPage, summary="Failed deliveries awaiting review")
async def list_failed(
    pool: DbPool,
    _: Reviewer,
    campaign_id: Identifier | None = None,
    channel: Channel | None = None,
    reason_code: Identifier | None = None,
    failed_from: Aware | None = Query(default=None, alias="from", description="RFC 3339 with an offset"),
    failed_to: Aware | None = Query(default=None, alias="to", description="RFC 3339 with an offset"),
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = None,
) -> dict[str, Any]:
    f = repository.FailedFilter(
        campaign_id=campaign_id,
        channel=channel.value if channel else None,
        reason_code=reason_code,
        failed_from=failed_from,
        failed_to=failed_to,
        limit=limit,
        after=_parse_cursor(cursor) if cursor else None,
    )
    async with pool.acquire() as conn:
        rows = await repository.list_failed(conn, f)
    return {
        "items": [_delivery(r) for r in rows],
        "next_cursor": _cursor(rows[-1]) if len(rows) == limit else None,
    }


@router.get(
    "/deliveries/{delivery_id}", response_model=DeliveryWithAttempts, summary="A delivery and every attempt"
)
async def get_delivery(pool: DbPool, delivery_id: uuid.UUID, _: Reviewer) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await repository.find_delivery(conn, delivery_id)
        if row is None:
            raise DeliveryNotFound(f"No delivery {delivery_id}.")
        attempts = await repository.attempts_of(conn, delivery_id)
    return {**_delivery(row), "attempt_log": [dict(a.items()) for a in attempts]}


@router.get("/orders/{order_id}/delivery", response_model=DeliveryWithAttempts, summary="An order's delivery")
async def get_order_delivery(pool: DbPool, order_id: uuid.UUID, principal: Reviewer) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await repository.find_by_order(conn, order_id)
    if row is None:
        raise DeliveryNotFound(f"No delivery for order {order_id}.")
    return await get_delivery(pool, row["delivery_id"], principal)


class Correction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Annotated[Email, NoNul] | None = None
    phone: Phone | None = None
    channel: Channel | None = Field(default=None, description="send on this channel from now on")
    resend: bool = Field(default=True, description="resend right after correcting")
    reason: Text | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> Correction:
        if self.email is None and self.phone is None and self.channel is None:
            raise ValueError("give an email, a phone or a channel to correct")
        return self


class ResendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text | None = None


class ResendAnswer(BaseModel):
    delivery_id: uuid.UUID
    status: str
    channel: Channel | None = None
    code: str | None = None
    detail: str | None = None


@router.post(
    "/deliveries/{delivery_id}/recipient",
    response_model=ResendAnswer,
    status_code=202,
    summary="Correct a recipient's email or phone (and resend)",
)
async def correct(
    pool: DbPool, delivery_id: uuid.UUID, body: Correction, principal: Reviewer
) -> dict[str, Any]:
    actor = principal.actor
    async with pool.acquire() as conn, conn.transaction():
        if body.channel is not None:
            row = await repository.find_delivery(conn, delivery_id)
            email = body.email or (row["email"] if row else None)
            phone = body.phone or (row["phone"] if row else None)
            if row is not None and not (email if body.channel is Channel.EMAIL else phone):
                raise Problem(
                    422,
                    "validation_failed",
                    detail=f"Invalid request: the {body.channel.value} channel needs a contact",
                    errors=[{"field": "body.channel", "code": "no_contact", "message": "no contact for it"}],
                )
        await review.correct_recipient(
            conn, delivery_id, actor=actor, email=body.email, phone=body.phone, channel=body.channel
        )
        if not body.resend:
            return {"delivery_id": delivery_id, "status": "corrected"}
        channel = await review.resend(conn, delivery_id, actor=actor, reason=body.reason)
    return {"delivery_id": delivery_id, "status": "queued", "channel": channel}


@router.post(
    "/deliveries/{delivery_id}/resend",
    response_model=ResendAnswer,
    status_code=202,
    summary="Resend a delivery (at most once per minute)",
)
async def resend_one(
    pool: DbPool, delivery_id: uuid.UUID, principal: Reviewer, body: ResendRequest | None = None
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        channel = await review.resend(
            conn, delivery_id, actor=principal.actor, reason=body.reason if body else None
        )
    return {"delivery_id": delivery_id, "status": "queued", "channel": channel}


class BulkResend(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delivery_ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)
    reason: Text | None = None


class BulkAnswer(BaseModel):
    results: list[ResendAnswer]


@router.post("/deliveries/resend", response_model=BulkAnswer, summary="Resend many deliveries; each answered")
async def resend_many(pool: DbPool, body: BulkResend, principal: Reviewer) -> dict[str, Any]:
    results = []
    actor = principal.actor
    async with pool.acquire() as conn:
        for delivery_id in dict.fromkeys(body.delivery_ids):
            try:
                async with conn.transaction():
                    channel = await review.resend(conn, delivery_id, actor=actor, reason=body.reason)
                results.append({"delivery_id": delivery_id, "status": "queued", "channel": channel})
            except DeliveryError as refused:
                code = {DeliveryNotFound: "delivery_not_found", ResendTooSoon: "resend_too_soon"}.get(
                    type(refused), "delivery_not_resendable"
                )
                results.append(
                    {"delivery_id": delivery_id, "status": "refused", "code": code, "detail": str(refused)}
                )
    return {"results": results}


class CampaignSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fallback_allowed: bool = Field(description="a permanent failure falls back WhatsApp → SMS → email")


@router.put(
    "/delivery/campaigns/{campaign_id}", response_model=CampaignSettings, summary="Campaign delivery settings"
)
async def put_campaign_settings(
    pool: DbPool, campaign_id: Identifier, body: CampaignSettings, principal: Manager
) -> dict[str, Any]:
    actor = principal.actor
    async with pool.acquire() as conn, conn.transaction():
        await repository.set_campaign_fallback(conn, campaign_id, body.fallback_allowed, actor)
        await append_audit(
            conn,
            actor=actor,
            action="delivery.campaign_settings",
            subject_type="campaign",
            subject_id=campaign_id,
            details=body.model_dump(),
        )
    return body.model_dump()

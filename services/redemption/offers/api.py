"""HTTP in for partner offers: the catalogue, redemptions at the partner, validation and member PINs."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from chassis.audit import append_audit
from chassis.auth import STAFF_ROLES, Principal, Role, require_roles
from chassis.db import Connection
from chassis.deps import DbPool
from chassis.inputs import Identifier, Name, PositiveInt32, Text
from chassis.models import model_from
from chassis.outbox import add_event
from chassis.problems import Problem, invalid_field
from chassis.rows import from_attributes
from contracts.delivery import DeliveryMessageRequested
from contracts.envelope import Envelope
from contracts.redemption import RedemptionKind, RedemptionStatus, ValidationMethod
from contracts.topics import Topics
from contracts.values import Channel
from services.redemption.catalogue_api import create_entry
from services.redemption.deps import acting_for, settings
from services.redemption.lifecycle import CatalogueStatus
from services.redemption.offers import domain, pins, rate_limits, segments
from services.redemption.offers import repository as repo
from services.redemption.records.api import record_json
from services.redemption.records.domain import Record
from services.redemption.records.repository import get_record, write_record
from services.redemption.settings import PRODUCER, RedemptionSettings
from services.redemption.views import OfferOut, OfferPage, RecordOut

router = APIRouter(tags=["offers"])
router.include_router(pins.router)
router.include_router(segments.router)

OFFER_MANAGERS = (Role.ADMIN, Role.OPS, Role.PARTNER)
OTP_TEMPLATE = "offer_one_time_code"


class OfferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offer_id: Identifier | None = None
    partner_id: Identifier | None = Field(default=None, description="staff only; a partner creates its own")
    title: Name
    description: Text | None = None
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    eligible_tiers: list[Identifier] = Field(default_factory=list)
    eligible_segments: list[Identifier] = Field(default_factory=list)
    limit_per_member: PositiveInt32 | None = None
    total_cap: PositiveInt32 | None = None
    validation_method: domain.OfferValidation

    @model_validator(mode="after")
    def _window(self) -> OfferIn:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


def offer_view(offer: domain.Offer) -> dict[str, Any]:
    """The offer as `OfferOut` tells it (its slots taken as `redeemed`), times as they are: the audit
    log writes them in ISO 8601."""
    return model_from(OfferOut, offer, redeemed=offer.used).model_dump()


@router.post("/v1/offers", status_code=201, response_model=OfferOut)
async def create_offer(
    body: OfferIn,
    principal: Annotated[Principal, Depends(require_roles(*OFFER_MANAGERS))],
    pool: DbPool,
) -> dict[str, Any]:
    partner_id = acting_for(
        principal,
        body.partner_id,
        field="partner_id",
        staff_detail="partner_id is required when staff create an offer",
        own_detail="A partner creates offers only for itself.",
    )
    offer = from_attributes(
        domain.Offer,
        body,
        offer_id=body.offer_id or f"of-{uuid.uuid4().hex[:12]}",
        partner_id=partner_id,
        valid_from=body.valid_from.astimezone(UTC),
        valid_until=body.valid_until.astimezone(UTC),
        eligible_tiers=tuple(body.eligible_tiers),
        eligible_segments=tuple(body.eligible_segments),
    )
    by = principal.actor
    await create_entry(
        pool,
        kind="offer",
        entry_id=offer.offer_id,
        insert=lambda conn: repo.insert_offer(conn, offer, created_by=by),
        by=by,
        details=offer_view(offer),
    )
    return offer_view(offer)


@router.get("/v1/offers", response_model=OfferPage)
async def list_offers(
    principal: Annotated[Principal, Depends(require_roles(*Role))],
    pool: DbPool,
    partner_id: Annotated[str | None, Query()] = None,
    open_now: Annotated[bool | None, Query(description="only active offers valid right now")] = None,
    status: Annotated[CatalogueStatus | None, Query(description="staff, partners: this status")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    if principal.has_any_role(STAFF_ROLES):
        partner, open_at = partner_id, (datetime.now(UTC) if open_now else None)
    elif Role.PARTNER in principal.roles:
        partner, open_at = principal.sub, (datetime.now(UTC) if open_now else None)
    else:  # members see what they can redeem now
        partner, open_at = partner_id, datetime.now(UTC)
    async with pool.acquire() as conn:
        offers = await repo.list_offers(
            conn,
            partner_id=partner,
            open_at=open_at,
            limit=limit,
            status=status if principal.has_any_role((*STAFF_ROLES, Role.PARTNER)) else None,
        )
    return {"items": [offer_view(o) for o in offers]}


class OfferRedemptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_id: Identifier = Field(description="who redeems: receives the one-time code, or owns the PIN")
    segment_token: Identifier | None = Field(
        default=None,
        description="the member's tier/segment token; refused when it contradicts what Orchard knows",
    )
    channel: domain.OfferChannel
    location: Text | None = None
    redeemed_at: AwareDatetime | None = Field(
        default=None,
        description="when the till says it happened: kept (and audited) next to the service's own time,"
        " only within ORCHARD_REDEMPTION_REDEEMED_AT_MAX_BACKDATE seconds back",
    )
    pin: str | None = Field(
        default=None, min_length=1, max_length=64, description="for offers validated by PIN"
    )
    idempotency_key: Identifier | None = None


def record_view(record: Record, **extra: Any) -> dict[str, Any]:
    """The record as the dashboards show it, with what this answer adds about the redemption."""
    return {**record_json(record), **extra}


UNKNOWN_OFFER = "offer_not_found"
MAX_RECORDED_OFFER_ID = 200


async def _own_offer(conn: Connection, principal: Principal, offer_id: str) -> domain.Offer:
    offer = await repo.get_offer(conn, offer_id)
    # Another partner's offer is as invisible as a missing one.
    if offer is None or offer.partner_id != principal.sub:
        raise Problem(404, UNKNOWN_OFFER, detail=f"No offer {offer_id}.")
    return offer


async def _refuse_unknown_offer(
    pool: asyncpg.Pool, principal: Principal, offer_id: str, body: OfferRedemptionIn, at: datetime
) -> None:
    """An attempt on an offer this partner does not have is recorded as failed, then answered 404."""
    async with pool.acquire() as conn:
        offer = await repo.get_offer(conn, offer_id)
    if offer is not None and offer.partner_id == principal.sub:
        return
    attempt = Record(
        record_id=uuid.uuid4(),
        kind=RedemptionKind.OFFER,
        status=RedemptionStatus.FAILED,
        redeemed_at=at,
        member_id=body.member_id,
        offer_id=offer_id if len(offer_id) <= MAX_RECORDED_OFFER_ID else None,
        partner_id=principal.sub,
        channel=str(body.channel),
        location=body.location,
        reason=UNKNOWN_OFFER,
    )
    async with pool.acquire() as conn, conn.transaction():
        await write_record(conn, attempt)
    raise Problem(404, UNKNOWN_OFFER, detail=f"No offer {offer_id}.")


def _base_record(offer: domain.Offer, body: OfferRedemptionIn, at: datetime) -> Record:
    return Record(
        record_id=uuid.uuid4(),
        kind=RedemptionKind.OFFER,
        status=RedemptionStatus.PENDING,
        redeemed_at=at,
        member_id=body.member_id,
        segment_token=body.segment_token,
        offer_id=offer.offer_id,
        partner_id=offer.partner_id,
        channel=str(body.channel),
        location=body.location,
        validation_method=ValidationMethod(str(offer.validation_method)),
    )


@router.post("/v1/offers/{offer_id}/redemptions", status_code=201, response_model=RecordOut)
async def redeem_offer(
    offer_id: str,
    body: OfferRedemptionIn,
    response: Response,
    principal: Annotated[Principal, Depends(require_roles(Role.PARTNER))],
    pool: DbPool,
    cfg: Annotated[RedemptionSettings, Depends(settings)],
) -> dict[str, Any]:
    """Record a redemption. PIN offers answer successful or failed at once; one-time code offers answer
    pending (the code goes to the member) until validated. Refusals are recorded as failed, with a reason;
    every PIN failure reads `pin_rejected` (the exact reason is audited). The service's clock is the
    redemption's time; a `redeemed_at` the partner gives is kept beside it, within bounds."""
    now = datetime.now(UTC)
    claimed = _claimed_time(body, cfg, now)
    async with pool.acquire() as conn:
        await rate_limits.enforce(conn, rate_limits.partner_validations(cfg), principal.sub)
    await _refuse_unknown_offer(pool, principal, offer_id, body, now)
    async with pool.acquire() as conn, conn.transaction():
        offer = await _own_offer(conn, principal, offer_id)
        if offer.validation_method is domain.OfferValidation.PIN and not body.pin:
            raise invalid_field(
                "body.pin",
                "missing",
                "required for PIN offers",
                detail="this offer is validated by the member's PIN",
            )
        if body.idempotency_key is not None:
            known = await repo.find_by_idempotency_key(conn, principal.sub, body.idempotency_key)
            if known is not None:
                record = await get_record(conn, known)
                assert record is not None
                response.status_code = 200
                return record_view(record, claimed_redeemed_at=_iso(await repo.claimed_time_of(conn, known)))
        record, pin_check, holds_slot = await _decide(conn, cfg, offer, body, now)
        await write_record(conn, record)
        failure_detail = pin_check.precise_reason if pin_check is not None else None
        await repo.insert_offer_redemption(
            conn,
            record_id=record.record_id,
            offer_id=offer.offer_id,
            partner_id=principal.sub,
            member_id=body.member_id,
            idempotency_key=body.idempotency_key,
            holds_slot=holds_slot,
            received_at=now,
            claimed_redeemed_at=claimed,
            failure_detail=failure_detail,
        )
        extra: dict[str, Any] = {"claimed_redeemed_at": _iso(claimed)}
        if record.status is RedemptionStatus.PENDING:
            extra |= await _send_one_time_code(conn, cfg, offer, record, now)
            response.status_code = 202
        # Audit entries last: the audit lock is held to the commit, after every row lock of this request.
        if pin_check is not None and failure_detail is not None:
            await pins.audit_rejection(conn, principal.actor, record, pin_check)
        if claimed is not None and claimed < now:
            await _audit_backdated(conn, principal.actor, record, body.member_id, now, claimed)
        return record_view(record, **extra)


async def _decide(
    conn: Connection, cfg: RedemptionSettings, offer: domain.Offer, body: OfferRedemptionIn, now: datetime
) -> tuple[Record, pins.PinCheck | None, bool]:
    """The redemption as recorded (refused with a reason, successful, or pending its one-time code), the
    PIN check made if any, and whether it holds one of the offer's slots."""
    record = _base_record(offer, body, now)
    failure: str | None = None
    pin_check: pins.PinCheck | None = None
    try:
        member = await repo.get_member_segments(conn, body.member_id)
        token, tokens = domain.resolve_segment(offer, claimed=body.segment_token, known=member)
        record = replace(record, segment_token=token)
        offer.check_redeemable(at=now, member_tokens=tokens)
    except domain.OfferError as exc:
        failure = exc.code
    if failure is None and offer.validation_method is domain.OfferValidation.PIN:
        assert body.pin is not None
        pin_check = await pins.check_pin(conn, cfg, body.member_id, body.pin, now)
        if pin_check.outcome is not domain.PinOutcome.VERIFIED:
            failure = domain.PIN_REJECTED
    holds_slot = False
    if failure is None:
        try:
            async with conn.transaction():  # a savepoint: a refused limit undoes the half taken
                await repo.take_slot(conn, offer, body.member_id)
            holds_slot = True
        except domain.OfferError as exc:
            failure = exc.code
    if failure is not None:
        record = replace(record, status=RedemptionStatus.FAILED, reason=failure)
    elif offer.validation_method is domain.OfferValidation.PIN:
        record = replace(record, status=RedemptionStatus.SUCCESSFUL)
    return record, pin_check, holds_slot


async def _audit_backdated(
    conn: Connection, by: str, record: Record, member_id: str, now: datetime, claimed: datetime
) -> None:
    await append_audit(
        conn,
        actor=by,
        action="offer.redemption_backdated",
        subject_type="redemption",
        subject_id=str(record.record_id),
        details={
            "offer_id": record.offer_id,
            "member_id": member_id,
            "received_at": now,
            "claimed_redeemed_at": claimed,
            "backdated_s": round((now - claimed).total_seconds(), 3),
        },
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _claimed_time(body: OfferRedemptionIn, cfg: RedemptionSettings, now: datetime) -> datetime | None:
    if body.redeemed_at is None:
        return None
    claimed = body.redeemed_at.astimezone(UTC)
    try:
        domain.check_claimed_time(
            claimed,
            now=now,
            max_backdate=timedelta(seconds=cfg.redeemed_at_max_backdate_s),
            max_ahead=timedelta(seconds=cfg.redeemed_at_max_ahead_s),
        )
    except domain.ClaimedTimeRefused as exc:
        raise invalid_field("body.redeemed_at", exc.code, str(exc), detail=str(exc)) from exc
    return claimed


async def _send_one_time_code(
    conn: Connection, cfg: RedemptionSettings, offer: domain.Offer, record: Record, now: datetime
) -> dict[str, Any]:
    assert record.member_id is not None
    # Refused here, the whole redemption rolls back: nothing is recorded and no slot is held.
    await rate_limits.enforce(conn, rate_limits.partner_otp_sends(cfg), offer.partner_id)
    await rate_limits.enforce(conn, rate_limits.member_otp_sends(cfg), record.member_id)
    code = domain.new_otp()
    key = cfg.otp_key.get_secret_value().encode()
    expires_at = now + timedelta(seconds=cfg.otp_ttl_s)
    await repo.insert_challenge(
        conn, domain.OtpChallenge(record.record_id, domain.otp_hash(key, record.record_id, code), expires_at)
    )
    # The code leaves only towards the delivery service, which sends it to the member's own contact.
    message = DeliveryMessageRequested(
        message_id=record.record_id,
        member_id=record.member_id,
        channel=Channel(cfg.otp_channel),
        template=OTP_TEMPLATE,
        params={
            "code": code,
            "offer_title": offer.title,
            "expires_in_minutes": str(max(cfg.otp_ttl_s // 60, 1)),
        },
    )
    envelope = Envelope.new(event_type=Topics.DELIVERY_MESSAGE_REQUESTED, producer=PRODUCER, data=message)
    await add_event(conn, envelope, key=record.member_id)
    return {"code_expires_at": expires_at.isoformat(), "attempts_left": cfg.otp_max_attempts}


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=32)


async def fail_pending(conn: Connection, record: Record, reason: str) -> Record:
    failed = replace(record, status=RedemptionStatus.FAILED, reason=reason)
    await write_record(conn, failed)
    await repo.release_slot(conn, record.record_id)
    return failed


@router.post("/v1/offers/{offer_id}/redemptions/{record_id}/validate", response_model=RecordOut)
async def validate_code(
    offer_id: str,
    record_id: uuid.UUID,
    body: CodeIn,
    principal: Annotated[Principal, Depends(require_roles(Role.PARTNER))],
    pool: DbPool,
    cfg: Annotated[RedemptionSettings, Depends(settings)],
) -> dict[str, Any]:
    """Check the one-time code the member read out. Wrong codes count; the last allowed one locks it."""
    async with pool.acquire() as conn:
        await rate_limits.enforce(conn, rate_limits.partner_validations(cfg), principal.sub)
    async with pool.acquire() as conn, conn.transaction():
        await _own_offer(conn, principal, offer_id)
        request = await repo.lock_offer_redemption(conn, record_id)
        challenge = await repo.lock_challenge(conn, record_id)
        record = await get_record(conn, record_id)
        if request is None or challenge is None or record is None or request["offer_id"] != offer_id:
            raise Problem(404, "redemption_not_found", detail=f"No pending redemption {record_id}.")
        if record.status is not RedemptionStatus.PENDING:
            return record_view(record)
        after, outcome = domain.verify_otp(
            challenge,
            body.code,
            key=cfg.otp_key.get_secret_value().encode(),
            now=datetime.now(UTC),
            max_attempts=cfg.otp_max_attempts,
        )
        await repo.save_challenge(conn, after)
        if outcome is domain.OtpOutcome.VERIFIED:
            record = replace(record, status=RedemptionStatus.SUCCESSFUL)
            await write_record(conn, record)
            return record_view(record)
        if outcome is domain.OtpOutcome.WRONG:
            return record_view(
                record, attempts_left=after.attempts_left(cfg.otp_max_attempts), code_accepted=False
            )
        reason = "too_many_attempts" if outcome is domain.OtpOutcome.LOCKED else "code_expired"
        return record_view(await fail_pending(conn, record, reason), code_accepted=False)


async def expire_open_challenges(pool: asyncpg.Pool, limit: int = 500) -> int:
    """Fail pending redemptions whose code expired unused, and free their slots."""
    async with pool.acquire() as conn, conn.transaction():
        ids = await repo.expired_challenges(conn, limit)
        for record_id in ids:
            challenge = await repo.lock_challenge(conn, record_id)
            record = await get_record(conn, record_id)
            if challenge is None or record is None:
                continue
            await repo.save_challenge(conn, replace(challenge, status="expired"))
            if record.status is RedemptionStatus.PENDING:
                await fail_pending(conn, record, "code_expired")
    return len(ids)

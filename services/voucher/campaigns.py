"""Campaigns: create, update, pause, resume, end; each change versioned, published and audited."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from chassis.audit import append_audit
from chassis.db import Connection
from chassis.models import model_from
from chassis.rows import from_row
from contracts.values import Channel, RewardType
from contracts.vouchers import CampaignChanged, CampaignStatus, ExpiryKind, ExpiryPolicy

from .domain import (
    CampaignExists,
    CampaignNotFound,
    CampaignRuleError,
    CampaignStateError,
    next_campaign_status,
)
from .events import publish
from .repository import campaigns as repository


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    version: int
    name: str
    reward_type: RewardType
    brand: str | None
    face_value: Decimal | None
    currency: str | None
    status: CampaignStatus
    per_record_limit: Decimal | None
    default_channel: Channel
    partner_ids: tuple[str, ...]
    expiry_policy: ExpiryPolicy
    budget: Decimal | None
    budget_used: Decimal
    low_stock_threshold: int
    allow_partial: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Campaign:
        kind = ExpiryKind(row["expiry_kind"])
        return from_row(
            cls,
            dict(row),
            reward_type=RewardType(row["reward_type"]),
            status=CampaignStatus(row["status"]),
            default_channel=Channel(row["default_channel"]),
            partner_ids=tuple(row["partner_ids"]),
            expiry_policy=ExpiryPolicy(kind=kind, expires_at=row["expiry_at"], days=row["expiry_days"]),
        )

    def to_event(self, denominations: tuple[Decimal, ...] = ()) -> CampaignChanged:
        return model_from(CampaignChanged, self, denominations=denominations)

    def validated(self) -> Campaign:
        """Checks the whole campaign with the contract's own rules (raises ValueError)."""
        self.to_event()
        return self


async def load(conn: Connection, campaign_id: str, *, for_update: bool = False) -> Campaign:
    row = await repository.campaign_row(conn, campaign_id, for_update=for_update)
    if row is None:
        raise CampaignNotFound(f"campaign {campaign_id} does not exist")
    return Campaign.from_row(row)


async def list_campaigns(
    conn: Connection,
    *,
    status: CampaignStatus | None,
    reward_type: RewardType | None,
    after: str | None,
    limit: int,
) -> list[Campaign]:
    """Campaigns in id order, from after the given id on."""
    rows = await repository.campaign_rows(
        conn,
        status=None if status is None else status.value,
        reward_type=None if reward_type is None else reward_type.value,
        after=after,
        limit=limit,
    )
    return [Campaign.from_row(r) for r in rows]


async def _save(conn: Connection, c: Campaign, *, insert: bool) -> Campaign:
    params = (
        c.campaign_id,
        c.version,
        c.name,
        str(c.reward_type),
        c.brand,
        c.face_value,
        c.currency,
        str(c.status),
        c.per_record_limit,
        str(c.default_channel),
        list(c.partner_ids),
        str(c.expiry_policy.kind),
        c.expiry_policy.expires_at,
        c.expiry_policy.days,
        c.budget,
        c.low_stock_threshold,
        c.allow_partial,
        c.budget_used,
    )
    if insert:
        row = await repository.insert_campaign(conn, params)
        if row is None:
            raise CampaignExists(f"campaign {c.campaign_id} already exists")
    else:
        row = await repository.update_campaign(conn, params)
    return Campaign.from_row(row)


async def code_values(conn: Connection, campaign: Campaign) -> tuple[Decimal, ...]:
    """The values the campaign's real codes hold besides its face value, in order."""
    values = await repository.code_values(conn, campaign.campaign_id)
    return tuple(value for value in values if value != campaign.face_value)


async def _changed(
    conn: Connection, campaign: Campaign, *, actor: str, action: str, details: dict[str, Any]
) -> None:
    await publish(conn, [campaign.to_event(await code_values(conn, campaign))])
    await audit(
        conn,
        campaign.campaign_id,
        actor=actor,
        action=f"campaign.{action}",
        details={"version": campaign.version, **details},
    )


async def audit(
    conn: Connection, campaign_id: str, *, actor: str, action: str, details: dict[str, Any]
) -> None:
    """An audit entry about the campaign (a change to it, or to its codes)."""
    await append_audit(
        conn, actor=actor, action=action, subject_type="campaign", subject_id=campaign_id, details=details
    )


async def create(conn: Connection, fields: dict[str, Any], *, actor: str) -> Campaign:
    campaign = Campaign(
        campaign_id=fields.get("campaign_id") or f"cmp-{uuid.uuid4().hex[:16]}",
        version=1,
        status=CampaignStatus.ACTIVE,
        budget_used=Decimal(0),
        **{k: v for k, v in fields.items() if k != "campaign_id"},
    ).validated()
    saved = await _save(conn, campaign, insert=True)
    await _changed(conn, saved, actor=actor, action="created", details={"name": saved.name})
    return saved


IMMUTABLE = ("reward_type", "currency")


async def update(conn: Connection, campaign_id: str, changes: dict[str, Any], *, actor: str) -> Campaign:
    current = await load(conn, campaign_id, for_update=True)
    if current.status is CampaignStatus.ENDED:
        raise CampaignStateError("an ended campaign cannot change")
    for name in IMMUTABLE:
        if name in changes and changes[name] != getattr(current, name):
            raise CampaignRuleError(f"{name} cannot change once the campaign exists")
    changes_face_value = "face_value" in changes and changes["face_value"] != current.face_value
    if changes_face_value and await repository.has_codes(conn, campaign_id):
        raise CampaignRuleError("face_value cannot change once the campaign has codes")
    if "budget" in changes:
        # Budget-less campaigns do not keep the running total: take it from what orders hold now.
        changes["budget_used"] = await repository.held_value(conn, campaign_id)
        if changes["budget"] is not None and changes["budget"] < changes["budget_used"]:
            raise CampaignRuleError(f"budget cannot go below what is already used ({changes['budget_used']})")
    updated = replace(current, version=current.version + 1, **changes).validated()
    saved = await _save(conn, updated, insert=False)
    await _changed(conn, saved, actor=actor, action="updated", details={"fields": sorted(changes)})
    return saved


async def change_status(
    conn: Connection, campaign_id: str, action: str, *, actor: str, reason: str | None
) -> Campaign:
    current = await load(conn, campaign_id, for_update=True)
    status = next_campaign_status(current.status, action)
    saved = await _save(conn, replace(current, version=current.version + 1, status=status), insert=False)
    await _changed(conn, saved, actor=actor, action=action, details={"reason": reason, "status": str(status)})
    return saved


async def announce_new_values(
    conn: Connection, campaign: Campaign, values: set[Decimal], known: tuple[Decimal, ...], *, actor: str
) -> None:
    """Codes just added with values no code of the campaign held before: a new version tells order
    intake that IPA records may now ask for them."""
    fresh = values - set(known) - {campaign.face_value}
    if not fresh:
        return
    current = await load(conn, campaign.campaign_id, for_update=True)
    saved = await _save(conn, replace(current, version=current.version + 1), insert=False)
    await _changed(
        conn, saved, actor=actor, action="denominations_added", details={"values": sorted(map(str, fresh))}
    )


async def overview(conn: Connection, campaign_id: str) -> dict[str, Any]:
    """The campaign with its code counts per status (real and test apart), budget and issuance rate."""
    campaign = await load(conn, campaign_id)
    if campaign.budget is None:
        campaign = replace(campaign, budget_used=await repository.held_value(conn, campaign_id))
    counts = await repository.code_counts(conn, campaign_id)
    real = {r["status"]: r["n"] for r in counts if not r["test"]}
    test = {r["status"]: r["n"] for r in counts if r["test"]}
    rate = await repository.issuance_rate(conn, campaign_id)
    held = await repository.held_orders(conn, campaign_id)
    return {
        "campaign": campaign,
        "code_counts": real,
        "test_code_counts": test,
        "held_orders": held["real"],
        "held_test_orders": held["test"],
        "issuance": {"last_hour": rate["last_hour"], "last_day": rate["last_day"], "total": rate["total"]},
    }

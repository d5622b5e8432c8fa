"""Operations on codes (admin, ops): recovery and redistribution, expiry extension, flagging, and the
expiry job. Each operation is audited with its actor and reason and publishes `voucher.status_changed`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from chassis.audit import append_audit
from chassis.db import Connection
from contracts.campaigns import CampaignActivityKind
from contracts.vouchers import CodeStatus, VoucherStatusChanged

from . import activity
from .crypto import CodeVault
from .domain import IssueFailure
from .events import publish
from .issuance import SYSTEM_ACTOR, Detachment, OrderRequest, detach_from_order, issue, return_to_pool
from .repository import operations as repository
from .repository.operations import Selection as Selection

MAX_BATCH = 50_000


async def _audit(conn: Connection, *, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
    await append_audit(
        conn, actor=actor, action=action, subject_type="codes", subject_id=subject, details=details
    )


def _subject(selection: Selection) -> str:
    return selection.campaign_id or (str(selection.code_ids[0]) if len(selection.code_ids) == 1 else "batch")


class _NotReplaced(Exception):
    """No fresh code could be issued in place of a delivered one: its voiding is undone."""

    def __init__(self, failure: IssueFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


async def recover(
    conn: Connection,
    selection: Selection,
    *,
    actor: str,
    reason: str,
    dry_run: bool,
    vault: CodeVault | None = None,
) -> dict[str, Any]:
    """Take unredeemed codes back from their orders. A code never delivered goes back to its campaign's
    pool. A delivered one is retired for good (`void`: its member may have it, so it is never issued
    again) and its order gets a fresh code, published on `voucher.issued` for delivery to send; when no
    fresh code can be issued (stock, budget, campaign) that code is left as it was and listed in
    `not_replaced`. `vault` seals the fresh codes: needed unless `dry_run`."""
    rows = await repository.lock_recoverable(conn, selection, MAX_BATCH)
    result: dict[str, Any] = {
        "dry_run": dry_run,
        "matched": len(rows),
        "code_ids": [str(r["code_id"]) for r in rows],
    }
    if selection.code_ids:
        eligible = {r["code_id"] for r in rows}
        result["skipped"] = [str(i) for i in selection.code_ids if i not in eligible]
    if dry_run:
        return result
    if vault is None:
        raise ValueError("recovering codes needs the vault that seals their replacements")
    replaced, not_replaced = await _take_back(conn, vault, rows, actor=actor, reason=reason)
    result["recovered"] = len(rows) - len(not_replaced)
    result["replaced"] = replaced
    if not_replaced:
        result["not_replaced"] = not_replaced
    kept = {entry["code_id"] for entry in not_replaced}
    await activity.tell(
        conn,
        CampaignActivityKind.CODES_RECOVERED,
        activity.per_campaign(r["campaign_id"] for r in rows if str(r["code_id"]) not in kept),
        actor=actor,
        detail=reason,
    )
    await _audit(
        conn,
        actor=actor,
        action="codes.recovered",
        subject=_subject(selection),
        details={
            "reason": reason,
            "count": result["recovered"],
            "code_ids": result["code_ids"][:1000],
            "voided": replaced[:1000],
            "not_replaced": not_replaced[:1000],
        },
    )
    return result


async def _take_back(
    conn: Connection, vault: CodeVault, rows: list[asyncpg.Record], *, actor: str, reason: str
) -> tuple[list[str], list[dict[str, str]]]:
    """Recover each code: the ids of the delivered ones voided and replaced, and those left as they were
    (with why no fresh code could be issued)."""
    replaced: list[str] = []
    not_replaced: list[dict[str, str]] = []
    for row in rows:
        if not row["delivered"]:
            await return_to_pool(conn, row, _recovered(row, CodeStatus.RECOVERED, actor=actor, reason=reason))
            continue
        try:
            async with conn.transaction():  # a savepoint: a code that cannot be replaced stays as it was
                await _void_and_replace(conn, vault, row, actor=actor, reason=reason)
            replaced.append(str(row["code_id"]))
        except _NotReplaced as refused:
            not_replaced.append({"code_id": str(row["code_id"]), "reason": str(refused.failure)})
    return replaced, not_replaced


def _recovered(row: asyncpg.Record, status: CodeStatus, *, actor: str, reason: str) -> Detachment:
    """A recovered code leaving its order: back to the pool (`recovered`) or retired (`voided`)."""
    action = "recovered" if status is CodeStatus.RECOVERED else "voided"
    return Detachment(
        status=status,
        action=action,
        actor=actor,
        reason=reason,
        release_reason=action,
        order_id=row["order_id"],
    )


async def _void_and_replace(
    conn: Connection, vault: CodeVault, row: asyncpg.Record, *, actor: str, reason: str
) -> None:
    """Retire a delivered code (it keeps its order for the record) and issue the order a fresh one."""
    order_id = row["order_id"]
    await repository.void_code(conn, row["code_id"])
    await detach_from_order(conn, row, _recovered(row, CodeStatus.VOID, actor=actor, reason=reason))
    request = OrderRequest(
        order_id=order_id,
        campaign_id=row["campaign_id"],
        member_id=row["member_id"] or "",
        value=row["value"],
        correlation_id=str(structlog.contextvars.get_contextvars().get("correlation_id") or uuid.uuid4()),
    )
    failure = await issue(conn, vault, request, replacing=True)
    if failure is not None:
        raise _NotReplaced(failure)


async def extend_expiry(
    conn: Connection, selection: Selection, *, expires_at: datetime, actor: str, reason: str, dry_run: bool
) -> dict[str, Any]:
    """Move expiry later for codes that expire before `expires_at`; expired ones come back to life."""
    if dry_run:
        return {
            "dry_run": True,
            "would_change": await repository.count_extendable(conn, selection, expires_at),
        }
    rows = await repository.extend_expiry(conn, selection, expires_at)
    await repository.record_expiry_extended(conn, rows, actor=actor, reason=reason, expires_at=expires_at)
    # Published: codes an order holds, and codes whose status came back; a pool code's later expiry is not.
    told = [r for r in rows if r["order_id"] is not None or r["status"] != r["old_status"]]
    await publish(conn, [_status_changed(r, reason=reason, expires_at=expires_at) for r in told])
    if selection.campaign_id is not None and not selection.code_ids:
        # Issuing later caps a code's expiry at the campaign's fixed date: move that date too.
        await repository.move_fixed_expiry_later(conn, selection.campaign_id, expires_at)
    await activity.tell(
        conn,
        CampaignActivityKind.EXPIRY_EXTENDED,
        activity.per_campaign(r["campaign_id"] for r in rows),
        actor=actor,
        detail=f"to {expires_at:%Y-%m-%d %H:%M} UTC: {reason}",
    )
    await _audit(
        conn,
        actor=actor,
        action="codes.expiry_extended",
        subject=_subject(selection),
        details={"reason": reason, "count": len(rows), "expires_at": expires_at},
    )
    return {"dry_run": False, "changed": len(rows)}


def _status_changed(
    row: asyncpg.Record, *, reason: str | None, expires_at: datetime | None
) -> VoucherStatusChanged:
    """The change of a code as the operations' statements return it."""
    return VoucherStatusChanged(
        code_id=row["code_id"],
        campaign_id=row["campaign_id"],
        order_id=row["order_id"],
        status=CodeStatus(row["status"]),
        previous_status=CodeStatus(row["old_status"]),
        reason=reason,
        expires_at=expires_at,
        remaining_value=row["remaining_value"],
        test=row["test"],
    )


async def flag(
    conn: Connection, code_ids: list[uuid.UUID], *, flagged: bool, actor: str, reason: str
) -> dict[str, Any]:
    """Flag (suspected fraud, partner report) or unflag codes; flagged: not issued, not redeemed."""
    if flagged:
        rows = await repository.flag_codes(conn, code_ids, reason)
    else:
        rows = await repository.unflag_codes(conn, code_ids)
    action = "flagged" if flagged else "unflagged"
    await _record_changes(conn, rows, action=action, actor=actor, reason=reason)
    changed = {r["code_id"] for r in rows}
    await _audit(
        conn,
        actor=actor,
        action=f"codes.{action}",
        subject=str(code_ids[0]) if len(code_ids) == 1 else "batch",
        details={"reason": reason, "code_ids": [str(i) for i in code_ids]},
    )
    return {
        action: len(rows),
        "skipped": [str(i) for i in code_ids if i not in changed],
        "campaign_ids": sorted({r["campaign_id"] for r in rows}),
    }


async def _record_changes(
    conn: Connection, rows: list[asyncpg.Record], *, action: str, actor: str, reason: str | None
) -> None:
    await repository.record_changes(conn, rows, action=action, actor=actor, reason=reason)
    await publish(conn, [_status_changed(r, reason=reason, expires_at=r["expires_at"]) for r in rows])


async def expire_due(conn: Connection, *, limit: int = 1000) -> int:
    """Expire up to `limit` codes whose time has come (the leader-elected job calls this in a loop)."""
    rows = await repository.expire_due(conn, limit)
    await _record_changes(conn, rows, action="expired", actor=SYSTEM_ACTOR, reason="expiry date reached")
    return len(rows)

"""Operations on codes (admin, ops): recovery and redistribution, expiry extension, flagging, and the
expiry job. Each operation is audited with its actor and reason and publishes `voucher.status_changed`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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
from .domain import CodeOperationRefused, IssueFailure
from .events import publish
from .issuance import SYSTEM_ACTOR, OrderRequest, detach_from_order, issue, return_to_pool

MAX_BATCH = 50_000


@dataclass(frozen=True)
class Selection:
    """Codes by id, or by filter (campaign, status, failed delivery, issue date range)."""

    code_ids: tuple[uuid.UUID, ...] = ()
    campaign_id: str | None = None
    status: CodeStatus | None = None
    delivery_failed: bool | None = None
    issued_from: datetime | None = None
    issued_to: datetime | None = None

    def where(self, first_param: int = 1) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []

        def add(sql: str, value: Any) -> None:
            params.append(value)
            clauses.append(sql.replace("?", f"${first_param + len(params) - 1}"))

        if self.code_ids:
            add("code_id = ANY(?::uuid[])", list(self.code_ids))
        if self.campaign_id is not None:
            add("campaign_id = ?", self.campaign_id)
        if self.status is not None:
            add("status = ?", str(self.status))
        if self.delivery_failed is not None:
            add("delivery_failed = ?", self.delivery_failed)
        if self.issued_from is not None:
            add("issued_at >= ?", self.issued_from)
        if self.issued_to is not None:
            add("issued_at < ?", self.issued_to)
        if not clauses:
            raise CodeOperationRefused("name the codes: code_ids or at least one filter")
        return " AND ".join(clauses), params


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
    where, params = selection.where()
    rows = await conn.fetch(
        f"""
        SELECT code_id, campaign_id, status, value, remaining_value, own_expires_at, order_id, member_id,
               delivered
          FROM codes
         WHERE {where} AND status IN ('issued', 'expired') AND order_id IS NOT NULL
           AND remaining_value = value AND NOT test
         ORDER BY seq LIMIT {MAX_BATCH} FOR UPDATE
        """,
        *params,
    )
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
    replaced: list[str] = []
    not_replaced: list[dict[str, str]] = []
    for row in rows:
        if not row["delivered"]:
            await return_to_pool(
                conn,
                row,
                status=CodeStatus.RECOVERED,
                action="recovered",
                actor=actor,
                reason=reason,
                release_reason="recovered",
                order_id=row["order_id"],
            )
            continue
        try:
            async with conn.transaction():  # a savepoint: a code that cannot be replaced stays as it was
                await _void_and_replace(conn, vault, row, actor=actor, reason=reason)
            replaced.append(str(row["code_id"]))
        except _NotReplaced as refused:
            not_replaced.append({"code_id": str(row["code_id"]), "reason": str(refused.failure)})
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


async def _void_and_replace(
    conn: Connection, vault: CodeVault, row: asyncpg.Record, *, actor: str, reason: str
) -> None:
    """Retire a delivered code (it keeps its order for the record) and issue the order a fresh one."""
    order_id = row["order_id"]
    await conn.execute(
        "UPDATE codes SET status = 'void', prior_status = status, updated_at = now() WHERE code_id = $1",
        row["code_id"],
    )
    await detach_from_order(
        conn,
        row,
        status=CodeStatus.VOID,
        action="voided",
        actor=actor,
        reason=reason,
        release_reason="voided",
        order_id=order_id,
    )
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


_RESTORED = """CASE WHEN remaining_value < value THEN 'partially_redeemed'
                    WHEN order_id IS NULL THEN 'available' ELSE 'issued' END"""


async def extend_expiry(
    conn: Connection, selection: Selection, *, expires_at: datetime, actor: str, reason: str, dry_run: bool
) -> dict[str, Any]:
    """Move expiry later for codes that expire before `expires_at`; expired ones come back to life."""
    where, params = selection.where(2)
    eligible = f"""{where} AND expires_at IS NOT NULL AND expires_at < $1
        AND status IN ('available', 'recovered', 'issued', 'partially_redeemed', 'expired')"""
    if dry_run:
        count = await conn.fetchval(f"SELECT count(*) FROM codes WHERE {eligible}", expires_at, *params)
        return {"dry_run": True, "would_change": count}
    rows = await conn.fetch(
        f"""
        WITH target AS (SELECT code_id, status AS old_status FROM codes WHERE {eligible} FOR UPDATE)
        UPDATE codes c SET expires_at = $1,
               own_expires_at = CASE WHEN own_expires_at IS NULL THEN NULL
                                   ELSE greatest(own_expires_at, $1) END,
               status = CASE WHEN c.status = 'expired' THEN {_RESTORED} ELSE c.status END,
               prior_status = CASE WHEN c.status = 'expired' THEN NULL ELSE prior_status END,
               updated_at = now()
          FROM target t WHERE c.code_id = t.code_id
        RETURNING c.code_id, c.campaign_id, c.order_id, c.status, t.old_status, c.remaining_value, c.test
        """,
        expires_at,
        *params,
    )
    await conn.executemany(
        "INSERT INTO code_events (code_id, action, status, previous_status, actor, reason, details)"
        " VALUES ($1, 'expiry_extended', $2, $3, $4, $5, jsonb_build_object('expires_at', $6::text))",
        [(r["code_id"], r["status"], r["old_status"], actor, reason, expires_at.isoformat()) for r in rows],
    )
    events = [
        VoucherStatusChanged(
            code_id=r["code_id"],
            campaign_id=r["campaign_id"],
            order_id=r["order_id"],
            status=CodeStatus(r["status"]),
            previous_status=CodeStatus(r["old_status"]),
            reason=reason,
            expires_at=expires_at,
            remaining_value=r["remaining_value"],
            test=r["test"],
        )
        for r in rows
        if r["order_id"] is not None or r["status"] != r["old_status"]
    ]
    await publish(conn, events)
    if selection.campaign_id is not None and not selection.code_ids:
        # Issuing later caps a code's expiry at the campaign's fixed date: move that date too.
        await conn.execute(
            "UPDATE campaigns SET expiry_at = $2 WHERE campaign_id = $1 AND expiry_kind = 'fixed_date'"
            " AND expiry_at < $2",
            selection.campaign_id,
            expires_at,
        )
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


async def flag(
    conn: Connection, code_ids: list[uuid.UUID], *, flagged: bool, actor: str, reason: str
) -> dict[str, Any]:
    """Flag (suspected fraud, partner report) or unflag codes; flagged: not issued, not redeemed."""
    if flagged:
        rows = await conn.fetch(
            """
            WITH target AS (SELECT code_id, status AS old_status FROM codes
                             WHERE code_id = ANY($1::uuid[]) AND status NOT IN ('flagged', 'redeemed')
                               FOR UPDATE)
            UPDATE codes c SET prior_status = c.status, status = 'flagged', flag_reason = $2,
                   updated_at = now()
              FROM target t WHERE c.code_id = t.code_id
            RETURNING c.code_id, c.campaign_id, c.order_id, c.status, t.old_status, c.remaining_value,
                      c.expires_at, c.test
            """,
            code_ids,
            reason,
        )
    else:
        rows = await conn.fetch(
            """
            WITH target AS (SELECT code_id, status AS old_status FROM codes
                             WHERE code_id = ANY($1::uuid[]) AND status = 'flagged' FOR UPDATE)
            UPDATE codes c SET status = coalesce(c.prior_status, 'available'), prior_status = NULL,
                   flag_reason = NULL, updated_at = now()
              FROM target t WHERE c.code_id = t.code_id
            RETURNING c.code_id, c.campaign_id, c.order_id, c.status, t.old_status, c.remaining_value,
                      c.expires_at, c.test
            """,
            code_ids,
        )
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
    conn: Connection, rows: list[Any], *, action: str, actor: str, reason: str | None
) -> None:
    await conn.executemany(
        "INSERT INTO code_events (code_id, action, status, previous_status, actor, reason, order_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(r["code_id"], action, r["status"], r["old_status"], actor, reason, r["order_id"]) for r in rows],
    )
    await publish(
        conn,
        [
            VoucherStatusChanged(
                code_id=r["code_id"],
                campaign_id=r["campaign_id"],
                order_id=r["order_id"],
                status=CodeStatus(r["status"]),
                previous_status=CodeStatus(r["old_status"]),
                reason=reason,
                expires_at=r["expires_at"],
                remaining_value=r["remaining_value"],
                test=r["test"],
            )
            for r in rows
        ],
    )


async def expire_due(conn: Connection, *, limit: int = 1000) -> int:
    """Expire up to `limit` codes whose time has come (the leader-elected job calls this in a loop)."""
    rows = await conn.fetch(
        """
        WITH target AS (SELECT code_id, status AS old_status FROM codes
                         WHERE status IN ('available', 'recovered', 'issued', 'partially_redeemed')
                           AND expires_at <= now()
                         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        UPDATE codes c SET prior_status = c.status, status = 'expired', updated_at = now()
          FROM target t WHERE c.code_id = t.code_id
        RETURNING c.code_id, c.campaign_id, c.order_id, c.status, t.old_status, c.remaining_value,
                  c.expires_at, c.test
        """,
        limit,
    )
    await _record_changes(conn, rows, action="expired", actor=SYSTEM_ACTOR, reason="expiry date reached")
    return len(rows)

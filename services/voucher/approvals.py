"""The voucher actions that wait for a second person: campaign budget increases and bulk recovery.

Each gate is asked by its route before acting; above its threshold it stores the request as a pending
approval (chassis/approvals.py) and the route answers 202. Approved, the action runs as the maker
asked it, with the maker as its actor, in the approval's transaction; held orders are served after.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg

from chassis.approvals import Approval, ApprovalAction, Approvals
from chassis.auth import Principal
from chassis.db import Connection
from chassis.money import money_text

from . import campaigns, operations
from .api_common import serve_held_orders
from .crypto import CodeVault
from .repository import operations as operations_repository

BUDGET_INCREASE = "budget_increase"
BULK_RECOVERY = "bulk_recovery"


def budget_increase(current: Decimal | None, wanted: Decimal | None) -> Decimal | None:
    """How much a budget change raises the budget (None: to no limit at all); zero when it does not."""
    if current is None:
        return Decimal(0)
    if wanted is None:
        return None
    return max(Decimal(0), wanted - current)


async def ask_for_budget_increase(
    conn: Connection,
    approvals: Approvals,
    *,
    campaign_id: str,
    update: dict[str, Any],
    wanted: Decimal | None,
    principal: Principal,
    above: Decimal,
) -> Approval | None:
    """A pending approval when the update raises the campaign's budget by more than `above`."""
    current = await campaigns.load(conn, campaign_id)
    increase = budget_increase(current.budget, wanted)
    if increase is not None and increase <= above:
        return None
    target = "no limit" if wanted is None else f"{wanted} {current.currency or ''}".strip()
    return await approvals.request(
        conn,
        kind=BUDGET_INCREASE,
        subject_id=campaign_id,
        summary=f"raise the budget of campaign {campaign_id} from {current.budget} to {target}",
        request={"campaign_id": campaign_id, "update": update},
        principal=principal,
        maker=principal.actor,
        reason=None,
    )


async def ask_for_bulk_recovery(
    conn: Connection,
    approvals: Approvals,
    *,
    selection: operations.Selection,
    recover: dict[str, Any],
    reason: str,
    principal: Principal,
    above: int,
) -> Approval | None:
    """A pending approval when the recovery would take back more than `above` codes (counted by a dry
    run of the recovery itself)."""
    actor = principal.actor
    preview = await operations.recover(conn, selection, actor=actor, reason=reason, dry_run=True)
    if preview["matched"] <= above:
        return None
    subject = selection.campaign_id or "codes"
    return await approvals.request(
        conn,
        kind=BULK_RECOVERY,
        subject_id=subject,
        summary=f"recover {preview['matched']} codes ({subject})",
        request={"recover": recover, "matched": preview["matched"]},
        principal=principal,
        maker=actor,
        reason=reason,
    )


def voucher_approvals(
    vault: CodeVault,
    *,
    update_campaign: Callable[[dict[str, Any]], dict[str, Any]],
    selection_of: Callable[[dict[str, Any]], operations.Selection],
) -> Approvals:
    """The voucher service's registry. `update_campaign(body)` and `selection_of(body)` turn a stored
    request back into what its route would have acted on (the routes own those request models)."""

    async def raise_budget(conn: Connection, approval: Approval) -> dict[str, Any]:
        campaign_id = approval.request["campaign_id"]
        changes = update_campaign(approval.request["update"])
        saved = await campaigns.update(conn, campaign_id, changes, actor=approval.maker)
        return {"budget": money_text(saved.budget, saved.currency), "version": saved.version}

    async def serve_campaign(pool: asyncpg.Pool, approval: Approval) -> None:
        await serve_held_orders(pool, vault, approval.request["campaign_id"])

    async def recover(conn: Connection, approval: Approval) -> dict[str, Any]:
        body = approval.request["recover"]
        selection = selection_of(body)
        result: dict[str, Any] = await operations.recover(
            conn, selection, actor=approval.maker, reason=approval.reason or "", dry_run=False, vault=vault
        )
        return {
            "recovered": result.get("recovered", 0),
            "code_ids": result["code_ids"][:1000],
            "campaign_ids": await operations_repository.campaigns_of_codes(conn, result["code_ids"]),
        }

    async def serve_recovered(pool: asyncpg.Pool, approval: Approval) -> None:
        await serve_held_orders(pool, vault, *(approval.result or {}).get("campaign_ids", []))

    return Approvals(
        "voucher",
        [
            ApprovalAction(BUDGET_INCREASE, raise_budget, after_approval=serve_campaign),
            ApprovalAction(BULK_RECOVERY, recover, after_approval=serve_recovered),
        ],
    )

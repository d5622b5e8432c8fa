"""IPA batches above the approval threshold (rows or total amount) wait for a second person.

The upload is stored in full as usual, but held (`awaiting_approval`) instead of queued: approving it
queues it for the batch worker, once; rejecting it declines it and drops its rows. Dry runs accept
nothing and never wait.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg

from chassis.approvals import Approval, ApprovalAction, Approvals
from chassis.auth import Principal
from chassis.db import Connection
from chassis.problems import Problem

from .batches import Mode
from .context import OrderContext
from .repository import batches as batch_repository

IPA_BATCH = "ipa_batch"


async def hold_for_approval(
    conn: Connection,
    approvals: Approvals,
    *,
    batch_id: uuid.UUID,
    mode: Mode,
    rows: int,
    rows_above: int,
    total_above: Decimal,
    principal: Principal,
    maker: str,
    file_name: str | None,
) -> Approval | None:
    """A pending approval (the batch held) when the batch is over either threshold; else None."""
    if mode is Mode.DRY_RUN:
        return None
    total = await batch_repository.batch_total(conn, batch_id)
    if rows <= rows_above and total <= total_above:
        return None
    await batch_repository.hold_batch(conn, batch_id, rows)
    return await approvals.request(
        conn,
        kind=IPA_BATCH,
        subject_id=str(batch_id),
        summary=f"IPA batch {batch_id}: {rows} records, amounts totalling {total} ({mode})",
        request={
            "batch_id": str(batch_id),
            "mode": str(mode),
            "rows": rows,
            "total_amount": str(total),
            "file_name": file_name,
        },
        principal=principal,
        maker=maker,
        reason=None,
    )


def ipa_batch_approval(ctx: OrderContext) -> ApprovalAction:
    async def queue(conn: Connection, approval: Approval) -> dict[str, Any]:
        batch_id = uuid.UUID(approval.request["batch_id"])
        if not await batch_repository.release_batch(conn, batch_id):
            raise Problem(409, "batch_not_awaiting_approval", detail=f"Batch {batch_id} is not held.")
        return {"batch_id": str(batch_id), "status": "queued"}

    async def decline(conn: Connection, approval: Approval) -> dict[str, Any]:
        batch_id = uuid.UUID(approval.request["batch_id"])
        await batch_repository.decline_batch(conn, batch_id)
        return {"batch_id": str(batch_id), "status": "declined"}

    async def wake(pool: asyncpg.Pool, approval: Approval) -> None:
        ctx.wake_worker()

    return ApprovalAction(IPA_BATCH, queue, on_reject=decline, after_approval=wake)


def order_approvals(ctx: OrderContext, *more: ApprovalAction) -> Approvals:
    return Approvals("order", [ipa_batch_approval(ctx), *more])

"""Budget alerts: a campaign whose issued value reaches a share of its budget (90 % by default) is told
once on `campaign.activity` (its route's owners and approvers hear of it); raising the budget re-arms it."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from contracts.campaigns import CampaignActivity, CampaignActivityKind

from .events import publish
from .repository.budget_alerts import nearly_spent


def _detail(row: asyncpg.Record) -> str:
    share = row["budget_used"] / row["budget"] if row["budget"] else Decimal(1)
    currency = f" {row['currency']}" if row["currency"] else ""
    return (
        f"{row['budget_used'].normalize():f} of {row['budget'].normalize():f}{currency} used ({share:.0%}),"
        f" {(row['budget'] - row['budget_used']).normalize():f}{currency} left"
    )


async def alert_nearly_spent(pool: asyncpg.Pool, ratio: Decimal) -> int:
    async with pool.acquire() as conn, conn.transaction():
        rows = await nearly_spent(conn, ratio)
        await publish(
            conn,
            [
                CampaignActivity(
                    campaign_id=r["campaign_id"],
                    kind=CampaignActivityKind.BUDGET_NEARLY_SPENT,
                    detail=_detail(r),
                )
                for r in rows
            ],
        )
    return len(rows)

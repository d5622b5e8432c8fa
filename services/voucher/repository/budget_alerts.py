"""The statements of budget alerts: which campaigns to tell, and re-arming those whose budget was raised."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from chassis.db import Connection


async def nearly_spent(conn: Connection, ratio: Decimal) -> list[asyncpg.Record]:
    """Campaigns at or past `ratio` of their budget not told yet, marked told; those back below it
    (their budget was raised) are re-armed."""
    await conn.execute(
        "UPDATE campaigns SET budget_alerted_at = NULL WHERE budget_alerted_at IS NOT NULL"
        " AND (budget IS NULL OR budget_used < budget * $1)",
        ratio,
    )
    return await conn.fetch(
        """
        UPDATE campaigns SET budget_alerted_at = now()
         WHERE budget IS NOT NULL AND budget_alerted_at IS NULL AND budget_used >= budget * $1
        RETURNING campaign_id, budget, budget_used, currency
        """,
        ratio,
    )

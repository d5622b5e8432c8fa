"""The figures the order charts read: orders counted per UTC hour of creation and state, in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from chassis.db import Connection


@dataclass(frozen=True)
class HourlyFilter:
    since: datetime
    until: datetime
    campaign_id: str | None = None
    member_id: str | None = None
    test: bool = False


async def hourly_counts(conn: Connection, flt: HourlyFilter) -> list[asyncpg.Record]:
    """(`hour`, `state`, `n`) for the orders created in `[since, until)` that match the filter."""
    return list(
        await conn.fetch(
            """
            SELECT date_trunc('hour', created_at, 'UTC') AS hour, state, count(*) AS n
              FROM orders
             WHERE created_at >= $1 AND created_at < $2
               AND ($3::text IS NULL OR campaign_id = $3)
               AND ($4::text IS NULL OR member_id = $4)
               AND test = $5
             GROUP BY 1, 2
            """,
            flt.since,
            flt.until,
            flt.campaign_id,
            flt.member_id,
            flt.test,
        )
    )

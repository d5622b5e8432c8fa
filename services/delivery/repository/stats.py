"""The figures the delivery charts read: deliveries per channel by where they stand, in SQL."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from chassis.db import Connection


async def channel_counts(
    conn: Connection, since: datetime, until: datetime, *, test: bool, campaign_id: str | None = None
) -> list[asyncpg.Record]:
    """(`channel`, `sent`, `failed`, `pending`) of the deliveries created in `[since, until)` (of one
    campaign if given), by the channel they were last sent (or are to be sent) on; cancelled ones are
    left out. `channel` is NULL for a code whose recipient has not arrived yet."""
    return list(
        await conn.fetch(
            """
            SELECT channel,
                   count(*) FILTER (WHERE status = 'sent') AS sent,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status IN ('waiting', 'queued', 'sending')) AS pending
              FROM deliveries
             WHERE created_at >= $1 AND created_at < $2 AND test = $3 AND status <> 'cancelled'
               AND ($4::text IS NULL OR campaign_id = $4)
             GROUP BY channel
             ORDER BY channel NULLS LAST
            """,
            since,
            until,
            test,
            campaign_id,
        )
    )

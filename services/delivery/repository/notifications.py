"""The notification queue: lines waiting per target, posted as one message per target and round."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from chassis.db import Connection


async def enqueue(conn: Connection, rows: Sequence[tuple[str, str, str | None, str]]) -> None:
    """(target, kind, campaign_id, line) rows."""
    await conn.executemany(
        "INSERT INTO notifications (target, kind, campaign_id, line) VALUES ($1, $2, $3, $4)", rows
    )


async def pending(pool: asyncpg.Pool, target: str, limit: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, kind, campaign_id, line, created_at, attempts FROM notifications"
        " WHERE target = $1 AND sent_at IS NULL AND next_attempt_at <= now() ORDER BY id LIMIT $2",
        target,
        limit,
    )


async def mark_sent(pool: asyncpg.Pool, ids: list[int]) -> None:
    await pool.execute("UPDATE notifications SET sent_at = now() WHERE id = ANY($1::bigint[])", ids)


async def retry_later(pool: asyncpg.Pool, ids: list[int], delay_s: float) -> None:
    await pool.execute(
        "UPDATE notifications SET attempts = attempts + 1,"
        " next_attempt_at = now() + make_interval(secs => $2)"
        " WHERE id = ANY($1::bigint[])",
        ids,
        delay_s,
    )

"""The statements of reveal limits: one count per actor and clock minute, shared by every replica."""

from __future__ import annotations

import asyncpg

from chassis.db import Connection

KEEP_WINDOWS = "10 minutes"


async def count_in_window(conn: Connection, actor: str, *, per_minute: int) -> asyncpg.Record:
    """One more reveal in the actor's current minute (the count stops growing past `per_minute` + 1):
    `reveals` so far and the window's `seconds_left`."""
    row = await conn.fetchrow(
        """
        INSERT INTO reveal_windows AS w (actor, window_start, reveals)
        VALUES ($1, date_trunc('minute', now()), 1)
        ON CONFLICT (actor, window_start) DO UPDATE SET reveals = least(w.reveals, $2) + 1
        RETURNING reveals,
                  ceil(extract(epoch FROM w.window_start + interval '1 minute' - now()))::int AS seconds_left
        """,
        actor,
        per_minute,
    )
    assert row is not None
    return row


async def purge_windows(conn: Connection) -> None:
    await conn.execute(f"DELETE FROM reveal_windows WHERE window_start < now() - interval '{KEEP_WINDOWS}'")  # noqa: S608 -- the interval is a module constant; no values in it

"""Reveals per actor and clock minute, counted in Postgres so that every replica sees one count."""

from __future__ import annotations

from chassis.db import Connection

KEEP_WINDOWS = "10 minutes"


async def count_reveal(conn: Connection, actor: str, *, per_minute: int) -> int | None:
    """Counts one reveal attempt by `actor` (refused ones too, so probing does not pay off).

    None when the attempt is within `per_minute`, else the seconds until the actor's window ends.
    """
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
    if row["reveals"] <= per_minute:
        return None
    return max(1, int(row["seconds_left"]))


async def purge_windows(conn: Connection) -> None:
    await conn.execute(f"DELETE FROM reveal_windows WHERE window_start < now() - interval '{KEEP_WINDOWS}'")

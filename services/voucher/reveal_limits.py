"""Reveals per actor and clock minute, counted in Postgres so that every replica sees one count."""

from __future__ import annotations

from chassis.db import Connection

from .repository import reveal_limits as repository
from .repository.reveal_limits import purge_windows as purge_windows


async def count_reveal(conn: Connection, actor: str, *, per_minute: int) -> int | None:
    """Counts one reveal attempt by `actor` (refused ones too, so probing does not pay off).

    None when the attempt is within `per_minute`, else the seconds until the actor's window ends.
    """
    row = await repository.count_in_window(conn, actor, per_minute=per_minute)
    if row["reveals"] <= per_minute:
        return None
    return max(1, int(row["seconds_left"]))

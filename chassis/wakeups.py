"""Wake-ups sent once a transaction has committed, not queued inside it.

A transaction that queues a NOTIFY takes a cluster-wide lock in its pre-commit and holds it until its
commit is flushed to disk, so every such commit, in every schema of the server, runs one at a time,
each waiting for its own WAL flush. Writers that only want to wake a waiting worker (the outbox relay,
delivery's senders) therefore wake it after the commit instead: in memory when a listener of this
process takes the wake-up (`listen_locally`), else with a NOTIFY of its own, a transaction with nothing
to flush. A connection that cannot tell when its transaction commits (not one of `create_pool`'s)
queues the NOTIFY in its transaction as before.
"""

from __future__ import annotations

from collections.abc import Callable

from .db import Connection, after_commit, schema_of

LocalListener = Callable[[str], bool]
"""Takes a payload; True when it handled the wake-up (no NOTIFY needed for another process)."""

_LOCAL: dict[tuple[str, str], list[LocalListener]] = {}


def listen_locally(schema: str, channel: str, listener: LocalListener) -> Callable[[], None]:
    """Hand this process's wake-ups on `channel` in `schema` to `listener`; returns its removal."""
    listeners = _LOCAL.setdefault((schema, channel), [])
    listeners.append(listener)

    def remove() -> None:
        if listener in listeners:
            listeners.remove(listener)

    return remove


async def notify_after_commit(conn: Connection, channel: str, payload: str = "") -> None:
    """Wake `channel`'s listeners with `payload` once `conn`'s transaction commits (at once outside one);
    repeated in one transaction, it wakes them once."""
    schema = schema_of(conn)

    async def wake() -> None:
        handled = False
        for listener in list(_LOCAL.get((schema or "", channel), ())):
            handled = listener(payload) or handled
        if not handled:
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

    if schema is None or not after_commit(conn, f"notify:{channel}:{payload}", wake):
        await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

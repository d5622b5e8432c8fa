"""Read-model handlers run a consumer batch at a time: their writes collected, then sent pipelined.

The portal's per-event handlers for order, voucher and delivery events only write (no reads), with
statements that commute across kinds (each kind touches its own table, or its own columns under a
per-statement rule such as "the newest state wins"). So running each handler against `WriteBatch`
instead of the connection, then sending every kind of statement with `executemany` in event order, has
exactly the effect of the events one by one, in a handful of round trips per batch instead of three
per event. A handler that tried to read through it would fail, and the consumer would fall back to the
events one by one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from chassis.db import Connection
from contracts.envelope import Envelope

Handler = Callable[[Connection, Envelope[Any]], Awaitable[None]]


class WriteBatch:
    """Stands in for the connection: keeps each `execute` for `flush`, grouped by statement, in order."""

    def __init__(self) -> None:
        self._statements: dict[str, list[tuple[Any, ...]]] = {}

    async def execute(self, query: str, *args: Any) -> str:
        self._statements.setdefault(query, []).append(args)
        return ""

    def as_connection(self) -> Connection:
        return cast(Connection, self)

    async def flush(self, conn: Connection) -> None:
        statements, self._statements = self._statements, {}
        for query, rows in statements.items():
            await conn.executemany(query, rows)


def batched(
    handle: Handler, *, alone: Callable[[Envelope[Any]], bool] | None = None
) -> Callable[[Connection, Sequence[Envelope[Any]]], Awaitable[None]]:
    """A batch handler with the effect of `handle` on each event in turn; events for which `alone` is
    true run on the connection itself, after the writes of the events before them."""

    async def handle_batch(conn: Connection, envelopes: Sequence[Envelope[Any]]) -> None:
        writes = WriteBatch()
        for envelope in envelopes:
            if alone is not None and alone(envelope):
                await writes.flush(conn)
                await handle(conn, envelope)
            else:
                await handle(writes.as_connection(), envelope)
        await writes.flush(conn)

    return handle_batch

"""For tests: a download whose query is stuck in the database is cut off, and so is its query."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

from .db import quote_ident
from .http import DownloadTimedOut
from .testing import wait_until


async def cut_off_while_locked(
    pool: asyncpg.Pool, table: str, query_like: str, download: Callable[[], Awaitable[object]]
) -> None:
    """With `table` locked, `download` is cut off by the download timeout (`DownloadTimedOut`) and its
    query (the one `LIKE query_like`) stops waiting in the database before the lock is released."""
    async with pool.acquire() as blocker, blocker.transaction():
        await blocker.execute(f"LOCK TABLE {quote_ident(table)} IN ACCESS EXCLUSIVE MODE")
        try:
            await download()
        except DownloadTimedOut:
            pass
        else:
            raise AssertionError(f"a download from the locked {table} was not cut off")

        async def query_gone() -> bool:
            waiting = await blocker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                query_like,
            )
            return bool(waiting == 0)

        await wait_until(query_gone, timeout=30, what=f"the download's query on {table} ended")

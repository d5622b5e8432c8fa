"""The services' connection pool against the real Postgres."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import pytest

from chassis.db import after_commit, create_pool, schema_of


@pytest.fixture
async def pool(service_db):
    pool = await create_pool(service_db.dsn, schema=service_db.schema, min_size=1, max_size=1)
    yield pool
    await pool.close()


async def _last_statement_of(admin, pid: int) -> str:
    return str(await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid))


async def test_a_returned_connection_costs_no_reset_statement(pool, service_db) -> None:
    async with pool.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.execute("SELECT 'the borrower''s last statement'")
    other = await asyncpg.connect(service_db.dsn)
    try:
        assert await _last_statement_of(other, pid) == "SELECT 'the borrower''s last statement'"
    finally:
        await other.close()


async def test_a_transaction_left_open_is_rolled_back_when_the_connection_returns(pool) -> None:
    await pool.execute("CREATE TABLE IF NOT EXISTS pool_probe (n int)")
    conn = await pool.acquire()
    tx = conn.transaction()
    await tx.start()
    await conn.execute("INSERT INTO pool_probe VALUES (1)")
    await pool.release(conn)
    async with pool.acquire() as again:
        assert not again.is_in_transaction()
        assert await again.fetchval("SELECT count(*) FROM pool_probe") == 0


async def test_a_transaction_left_idle_by_a_frozen_holder_is_ended_and_its_locks_released(service_db) -> None:
    frozen = await create_pool(
        service_db.dsn, schema=service_db.schema, min_size=1, max_size=1, idle_in_transaction_timeout_s=1.0
    )
    live = await create_pool(service_db.dsn, schema=service_db.schema, min_size=1, max_size=1)
    await live.execute("CREATE TABLE IF NOT EXISTS idle_probe (id int PRIMARY KEY)")
    holder = await frozen.acquire()
    try:
        await holder.execute("BEGIN")
        await holder.execute("INSERT INTO idle_probe VALUES (1)")  # holds the key until it ends
        # The live replica's insert of the same key waits on the holder, then wins once Postgres ends it.
        async with live.acquire() as conn:
            assert await conn.execute("INSERT INTO idle_probe VALUES (1)", timeout=60) == "INSERT 0 1"
        # Depending on when the server's FATAL reaches the client, the ended session answers with the
        # server's error, a closed connection, or asyncpg's protocol-state error (all transient to us).
        ended = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, ConnectionError)
        with pytest.raises(ended):
            await holder.execute("COMMIT", timeout=10)
        assert await live.fetchval("SELECT count(*) FROM idle_probe") == 1
    finally:
        # However the test ends, the held connection goes, so closing the pools cannot wait on it.
        with contextlib.suppress(Exception):
            holder.terminate()
        with contextlib.suppress(Exception):
            await frozen.release(holder)
        await asyncio.wait_for(frozen.close(), 10)
        await asyncio.wait_for(live.close(), 10)


async def test_after_commit_work_runs_once_the_outermost_transaction_commits_and_never_on_rollback(
    pool,
) -> None:
    ran: list[str] = []

    def note(what: str):
        async def run() -> None:
            ran.append(what)

        return run

    async with pool.acquire() as conn:
        async with conn.transaction():
            async with conn.transaction():  # a savepoint: its release is not the commit
                assert after_commit(conn, "k", note("first"))
                assert after_commit(conn, "k", note("second"))  # one per key and transaction
            assert ran == []
        assert ran == ["first"]

        with contextlib.suppress(RuntimeError):
            async with conn.transaction():
                assert after_commit(conn, "k", note("rolled back"))
                raise RuntimeError("roll it back")
        explicit = conn.transaction()
        await explicit.start()
        assert after_commit(conn, "k", note("explicit"))
        await explicit.commit()
        assert ran == ["first", "explicit"]

        assert not after_commit(conn, "k", note("outside")), "no transaction: nothing to wait for"
        assert schema_of(conn) is not None


async def test_after_commit_work_that_fails_does_not_make_the_commit_look_failed(pool) -> None:
    await pool.execute("CREATE TABLE IF NOT EXISTS after_commit_probe (n int)")

    async def broken() -> None:
        raise ConnectionError("the wake-up could not be sent")

    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("INSERT INTO after_commit_probe VALUES (1)")
            assert after_commit(conn, "k", broken)
        assert await conn.fetchval("SELECT count(*) FROM after_commit_probe") == 1
